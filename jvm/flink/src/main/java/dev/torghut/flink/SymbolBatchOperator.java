package dev.torghut.flink;

import java.io.ByteArrayOutputStream;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.ChainingStrategy;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback;
import org.apache.flink.types.Row;

/**
 * Groups consecutive {@code Row(symbol, value)} records of the same symbol into one
 * {@code Row(symbol, batch)}, so the Python keyed function is called once per batch instead of
 * once per record (PyFlink's per-call hand-over costs more than the function's own work).
 *
 * <p>Batch layout: repeated {@code u32 big-endian length, value bytes}. A symbol's batch is
 * emitted when the operator holds {@code maxRecords} records in all, {@code maxDelayMs} after
 * the first buffered record (a processing-time timer), before every watermark, and before
 * every checkpoint barrier ({@link #prepareSnapshotPreBarrier}), so nothing buffered is ever
 * outside a checkpoint and no watermark overtakes a buffered record. The order of a symbol's
 * records is kept; a batch carries the timestamp of its last record.
 */
public final class SymbolBatchOperator extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {
    private static final long serialVersionUID = 1L;

    private final int maxRecords;
    private final long maxDelayMs;
    private transient Map<String, Buffer> buffers;
    private transient int buffered;
    private transient boolean timerArmed;

    private static final class Buffer {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream(4096);
        long timestamp = Long.MIN_VALUE;
        boolean hasTimestamp;
    }

    public SymbolBatchOperator(int maxRecords, long maxDelayMs) {
        if (maxRecords < 1 || maxDelayMs < 0) {
            throw new IllegalArgumentException(
                    "maxRecords must be >= 1 and maxDelayMs >= 0, got "
                            + maxRecords + ", " + maxDelayMs);
        }
        this.maxRecords = maxRecords;
        this.maxDelayMs = maxDelayMs;
        this.chainingStrategy = ChainingStrategy.ALWAYS;
    }

    @Override
    public void open() throws Exception {
        super.open();
        buffers = new LinkedHashMap<>();
        buffered = 0;
        timerArmed = false;
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row row = element.getValue();
        String symbol = (String) row.getField(0);
        byte[] value = (byte[]) row.getField(1);
        Buffer buf = buffers.computeIfAbsent(symbol, s -> new Buffer());
        int n = value.length;
        buf.bytes.write((n >>> 24) & 0xff);
        buf.bytes.write((n >>> 16) & 0xff);
        buf.bytes.write((n >>> 8) & 0xff);
        buf.bytes.write(n & 0xff);
        buf.bytes.write(value, 0, n);
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
        for (Map.Entry<String, Buffer> e : buffers.entrySet()) {
            Buffer buf = e.getValue();
            if (buf.bytes.size() == 0) {
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
