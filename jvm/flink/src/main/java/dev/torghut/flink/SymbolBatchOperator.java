package dev.torghut.flink;

import java.io.ByteArrayOutputStream;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.ChainingStrategy;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Stamps every raw record with its partition's event-time mark, then groups consecutive
 * records of the same symbol into one {@code Row(symbol, batch)}, so the Python keyed function
 * is called once per batch instead of once per record.
 *
 * <p><b>The mark</b> (docs/design.md, "Event time"): per source split ({@code topic-partition})
 * the operator keeps the highest event ms seen so far, {@code H}, and stamps each record with
 * {@code H - outOfOrdernessMs - 1} as it was <i>before</i> that record: exactly the watermark
 * Flink's bounded-out-of-orderness generator would emit for that partition at that point. It is
 * a function of the partition's record order alone, so "is this trade late" is decided the same
 * way at any consumption speed and across restores (the marks are operator state, union-
 * redistributed on rescale: every subtask keeps the maximum per split). Flink's real watermark
 * is the minimum over all splits and lags the marks, so a bar that closes on it can no longer
 * receive a record that its mark lets in. Heartbeat rows ({@link
 * SymbolKeyedDeserializationSchema#HEARTBEAT_KEY}) move their split's mark and are dropped.
 *
 * <p><b>Batch layout</b>: repeated {@code u32 big-endian length, i64 big-endian mark, value
 * bytes} (the length counts the value only). A symbol's batch is emitted when the operator
 * holds {@code maxRecords} records in all, {@code maxDelayMs} after the first buffered record (a
 * processing-time timer), before every watermark, and before every checkpoint barrier ({@link
 * #prepareSnapshotPreBarrier}), so nothing buffered is ever outside a checkpoint and no
 * watermark overtakes a buffered record. The order of a symbol's records is kept; a batch
 * carries the timestamp of its last record.
 *
 * <p><b>Bounded per symbol</b>: a symbol's buffer is dropped at a flush that finds it empty
 * (no record since the previous flush), so memory and flush cost follow the symbols active in
 * the last two flush intervals, not every symbol ever seen; gauge {@code symbolBuffers}.
 */
public final class SymbolBatchOperator extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {
    private static final long serialVersionUID = 2L;

    private final int maxRecords;
    private final long maxDelayMs;
    private final long outOfOrdernessMs;
    private transient Map<String, Buffer> buffers;
    private transient Map<String, long[]> highWater;
    private transient ListState<Tuple2<String, Long>> highWaterState;
    private transient int buffered;
    private transient boolean timerArmed;

    private static final class Buffer {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream(4096);
        long timestamp = Long.MIN_VALUE;
        boolean hasTimestamp;
    }

    public SymbolBatchOperator(int maxRecords, long maxDelayMs, long outOfOrdernessMs) {
        if (maxRecords < 1 || maxDelayMs < 0 || outOfOrdernessMs < 0) {
            throw new IllegalArgumentException(
                    "maxRecords must be >= 1, maxDelayMs and outOfOrdernessMs >= 0, got "
                            + maxRecords + ", " + maxDelayMs + ", " + outOfOrdernessMs);
        }
        this.maxRecords = maxRecords;
        this.maxDelayMs = maxDelayMs;
        this.outOfOrdernessMs = outOfOrdernessMs;
        this.chainingStrategy = ChainingStrategy.ALWAYS;
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        highWater = new HashMap<>();
        highWaterState =
                context.getOperatorStateStore()
                        .getUnionListState(
                                new ListStateDescriptor<>(
                                        "partition-event-time-marks",
                                        Types.TUPLE(Types.STRING, Types.LONG)));
        if (context.isRestored()) {
            for (Tuple2<String, Long> e : highWaterState.get()) {
                long[] h = highWater.computeIfAbsent(e.f0, s -> new long[] {Long.MIN_VALUE});
                h[0] = Math.max(h[0], e.f1);
            }
        }
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        highWaterState.clear();
        for (Map.Entry<String, long[]> e : highWater.entrySet()) {
            highWaterState.add(Tuple2.of(e.getKey(), e.getValue()[0]));
        }
    }

    @Override
    public void open() throws Exception {
        super.open();
        buffers = new LinkedHashMap<>();
        buffered = 0;
        timerArmed = false;
        // symbols holding a buffer (bounded: idle ones are dropped at the next flush)
        getMetricGroup().gauge("symbolBuffers", (Gauge<Integer>) () -> buffers.size());
    }

    /** The split's mark before {@code eventMs}, then {@code eventMs} folded into it. */
    private long markThenAdvance(String split, long eventMs) {
        long[] h = highWater.get(split);
        if (h == null) {
            h = new long[] {Long.MIN_VALUE};
            highWater.put(split, h);
        }
        long max = h[0];
        // Flink's BoundedOutOfOrdernessWatermarks: max timestamp - bound - 1, from MIN_VALUE
        long mark = max == Long.MIN_VALUE ? Long.MIN_VALUE : max - outOfOrdernessMs - 1;
        if (eventMs > max) {
            h[0] = eventMs;
        }
        return mark;
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row row = element.getValue();
        String symbol = (String) row.getField(0);
        long mark = markThenAdvance((String) row.getField(2), (Long) row.getField(3));
        if (SymbolKeyedDeserializationSchema.HEARTBEAT_KEY.equals(symbol)) {
            return;
        }
        byte[] value = (byte[]) row.getField(1);
        Buffer buf = buffers.computeIfAbsent(symbol, s -> new Buffer());
        int n = value.length;
        ByteArrayOutputStream out = buf.bytes;
        out.write((n >>> 24) & 0xff);
        out.write((n >>> 16) & 0xff);
        out.write((n >>> 8) & 0xff);
        out.write(n & 0xff);
        for (int shift = 56; shift >= 0; shift -= 8) {
            out.write((int) (mark >>> shift) & 0xff);
        }
        out.write(value, 0, n);
        if (element.hasTimestamp()) {
            buf.timestamp = element.getTimestamp();
            buf.hasTimestamp = true;
        }
        buffered++;
        if (buffered >= maxRecords || maxDelayMs == 0) {
            flush();
        } else if (!timerArmed) {
            timerArmed = true;
            long now = getProcessingTimeService().getCurrentProcessingTime();
            getProcessingTimeService().registerTimer(now + maxDelayMs, this);
        }
    }

    @Override
    public void onProcessingTime(long time) throws Exception {
        timerArmed = false;
        flush();
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        flush();
        super.processWatermark(mark);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }

    private void flush() {
        if (buffered == 0) {
            return;
        }
        Iterator<Map.Entry<String, Buffer>> it = buffers.entrySet().iterator();
        while (it.hasNext()) {
            Map.Entry<String, Buffer> e = it.next();
            Buffer buf = e.getValue();
            if (buf.bytes.size() == 0) {
                // no record of this symbol since the previous flush: an idle symbol's buffer
                // goes, so the map holds the symbols of the last two flush intervals, never
                // every symbol ever seen (and a flush walks only those)
                it.remove();
                continue;
            }
            Row batch = Row.of(e.getKey(), buf.bytes.toByteArray());
            StreamRecord<Row> out = buf.hasTimestamp
                    ? new StreamRecord<>(batch, buf.timestamp)
                    : new StreamRecord<>(batch);
            output.collect(out);
            buf.bytes.reset();
            buf.hasTimestamp = false;
        }
        buffered = 0;
    }
}
