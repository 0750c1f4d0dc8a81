package dev.torghut.flink;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Emits {@code Row(symbol, value bytes, split, event ms)} per raw Kafka record.
 *
 * <ul>
 *   <li>symbol: the record key (the forwarder keys every raw record by its symbol); a record
 *       without a key gets {@link #NO_KEY} and is rejected (counted) by the job; a heartbeat
 *       (no value, header {@link #HEARTBEAT_HEADER}) gets {@link #HEARTBEAT_KEY} and is dropped
 *       by {@link SymbolBatchOperator} after moving its partition's event-time mark.
 *   <li>split: {@code topic-partition}, the unit whose record order is the input log.
 *   <li>event ms: the timestamp the watermarks and the partition marks use: the record
 *       timestamp (the Alpaca event time), but never more than {@code maxFutureMs} after the
 *       envelope's {@code ingest_ts} (its first field, read from the Confluent-framed Avro
 *       bytes), so one far-future event time cannot move event time for every other record.
 *       A value whose head cannot be read does not move event time at all.
 * </ul>
 *
 * <p>Keying happens in Java ({@code keyBy} on field 0), so the source task runs no Python.
 */
public final class SymbolKeyedDeserializationSchema implements KafkaRecordDeserializationSchema<Row> {
    private static final long serialVersionUID = 2L;

    /** Key used for records that carry no Kafka key; never a valid ticker. */
    public static final String NO_KEY = "__rejected__";
    /** Key of heartbeat records (shared/heartbeat.py); they never leave the source chain. */
    public static final String HEARTBEAT_KEY = "__heartbeat__";
    /** Header that marks a heartbeat record (shared/heartbeat.py HEADER). */
    public static final String HEARTBEAT_HEADER = "torghut.heartbeat";
    /** Event ms of a record whose value cannot be read: moves no mark. */
    public static final long NO_TIME = Long.MIN_VALUE;

    private static final byte[] EMPTY = new byte[0];
    private final long maxFutureMs;
    private transient Map<String, String[]> splitNames;

    public SymbolKeyedDeserializationSchema(long maxFutureMs) {
        if (maxFutureMs < 0) {
            throw new IllegalArgumentException("maxFutureMs must be >= 0, got " + maxFutureMs);
        }
        this.maxFutureMs = maxFutureMs;
    }

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) {
        String split = splitName(record.topic(), record.partition());
        byte[] value = record.value();
        if (value == null && record.headers().lastHeader(HEARTBEAT_HEADER) != null) {
            out.collect(Row.of(HEARTBEAT_KEY, EMPTY, split, record.timestamp()));
            return;
        }
        byte[] key = record.key();
        String symbol =
                key == null || key.length == 0 ? NO_KEY : new String(key, StandardCharsets.UTF_8);
        if (value == null) {
            value = EMPTY;
        }
        out.collect(Row.of(symbol, value, split, eventMs(record.timestamp(), value, maxFutureMs)));
    }

    /** The record timestamp, capped at ingest_ts + maxFutureMs; NO_TIME if unreadable. */
    static long eventMs(long recordTs, byte[] value, long maxFutureMs) {
        // Confluent framing: magic 0, 4-byte schema id; then the Envelope: ingest_ts (long, ns)
        if (value.length < 6 || value[0] != 0) {
            return NO_TIME;
        }
        long raw = 0;
        int shift = 0;
        int i = 5;
        while (true) {
            if (i >= value.length || shift > 63) {
                return NO_TIME;
            }
            int b = value[i++] & 0xff;
            raw |= (long) (b & 0x7f) << shift;
            if ((b & 0x80) == 0) {
                break;
            }
            shift += 7;
        }
        long ingestNs = (raw >>> 1) ^ -(raw & 1);
        long cap = Math.floorDiv(ingestNs, 1_000_000L) + maxFutureMs;
        return Math.min(recordTs, cap);
    }

    private String splitName(String topic, int partition) {
        if (splitNames == null) {
            splitNames = new HashMap<>();
        }
        String[] names = splitNames.get(topic);
        if (names == null || names.length <= partition) {
            String[] grown = new String[Math.max(partition + 1, 8)];
            if (names != null) {
                System.arraycopy(names, 0, grown, 0, names.length);
            }
            names = grown;
            splitNames.put(topic, names);
        }
        String name = names[partition];
        if (name == null) {
            name = names[partition] = topic + "-" + partition;
        }
        return name;
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return Types.ROW(
                Types.STRING, PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO, Types.STRING, Types.LONG);
    }
}
