package dev.torghut.flink;

import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;
import org.apache.flink.types.Row;

/**
 * Event time of a {@link SymbolKeyedDeserializationSchema} row: its field 3 (the record
 * timestamp capped by the envelope's ingest time), so Flink's watermarks and the partition
 * marks of {@link SymbolBatchOperator} follow the very same timestamps.
 */
public final class RowEventTimeAssigner implements SerializableTimestampAssigner<Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public long extractTimestamp(Row row, long recordTimestamp) {
        return (Long) row.getField(3);
    }
}
