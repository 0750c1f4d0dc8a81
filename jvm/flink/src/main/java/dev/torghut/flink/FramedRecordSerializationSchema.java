package dev.torghut.flink;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * Turns a frame built by {@code shared.framing.frame_record} into a Kafka record, so one
 * transactional sink can write every derived topic with the key the Python side chose.
 *
 * <p>Frame layout (big endian): u16 topic length, topic (UTF-8), u16 key length, key, value.
 */
public final class FramedRecordSerializationSchema
        implements KafkaRecordSerializationSchema<byte[]> {
    private static final long serialVersionUID = 1L;

    @Override
    public ProducerRecord<byte[], byte[]> serialize(
            byte[] frame, KafkaSinkContext context, Long timestamp) {
        if (frame.length < 4) {
            throw new IllegalArgumentException(
                    "framed record shorter than its 4-byte header: " + frame.length + " bytes");
        }
        int topicLen = ((frame[0] & 0xff) << 8) | (frame[1] & 0xff);
        int keyAt = 2 + topicLen;
        if (frame.length < keyAt + 2) {
            throw new IllegalArgumentException("framed record truncated inside its topic name");
        }
        String topic = new String(frame, 2, topicLen, StandardCharsets.UTF_8);
        int keyLen = ((frame[keyAt] & 0xff) << 8) | (frame[keyAt + 1] & 0xff);
        int valueAt = keyAt + 2 + keyLen;
        if (frame.length < valueAt) {
            throw new IllegalArgumentException("framed record truncated inside its key");
        }
        byte[] key = keyLen == 0 ? null : Arrays.copyOfRange(frame, keyAt + 2, valueAt);
        byte[] value = Arrays.copyOfRange(frame, valueAt, frame.length);
        return new ProducerRecord<>(topic, null, timestamp, key, value);
    }
}
