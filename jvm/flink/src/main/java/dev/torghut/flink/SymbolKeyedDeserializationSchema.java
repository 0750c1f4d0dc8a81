package dev.torghut.flink;

import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Emits {@code Row(symbol, value bytes)} per raw Kafka record: the key is the record key (the
 * forwarder keys every raw record by its symbol), the value is handed to Python untouched.
 *
 * <p>Keying happens in Java ({@code keyBy} on field 0), so the source task runs no Python at
 * all: with PyFlink's thread mode every Python operator of the slot shares one interpreter
 * and its GIL, and a Python decode step in the source thread made the two task threads take
 * turns. A record without a key gets {@link #NO_KEY} and is rejected (counted) by the job.
 */
public final class SymbolKeyedDeserializationSchema implements KafkaRecordDeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    /** Key used for records that carry no Kafka key; never a valid ticker. */
    public static final String NO_KEY = "__rejected__";

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) {
        byte[] key = record.key();
        String symbol =
                key == null || key.length == 0 ? NO_KEY : new String(key, StandardCharsets.UTF_8);
        byte[] value = record.value();
        out.collect(Row.of(symbol, value == null ? new byte[0] : value));
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return Types.ROW(Types.STRING, PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO);
    }
}
