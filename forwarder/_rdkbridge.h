/*
 * forwarder/_rdkbridge.h: the native fast path's direct line to librdkafka.
 *
 * confluent_kafka's produce() allocates per-message callback state and, for every acked
 * message, takes the GIL back in poll() to free it (even with error-only delivery
 * reports). The router's fast path instead calls rd_kafka_producev() on the same
 * rd_kafka_t with no per-message opaque (confluent_kafka's delivery callback returns at
 * once for such messages) and learns about failed deliveries through an
 * on_acknowledgement interceptor. That interceptor is registered by this very extension
 * acting as a librdkafka plugin (`plugin.library.paths`, its exported conf_init), which is
 * also how the rd_kafka_t is learned (on_new): nothing of confluent_kafka's internals is
 * touched.
 *
 * The library is the one confluent_kafka loaded, found among the process's loaded objects
 * and resolved with dlsym at run time (bind_librdkafka), so building needs no librdkafka
 * headers. The few declarations below are librdkafka's public, ABI-stable interface
 * (rdkafka.h): rd_kafka_message_t's layout, the RD_KAFKA_VTYPE_* values of producev, the
 * interceptor signatures.
 */
#ifndef TORGHUT_RDKBRIDGE_H
#define TORGHUT_RDKBRIDGE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct rdk_state rdk_state_t;

/* The bridge of a producer handle object (claim()), or NULL when it is not one or its
   rd_kafka_t is gone. Borrowed: valid while the handle object is. */
rdk_state_t *rdk_from_handle(PyObject *handle);

/* The producer's handle of a topic (rd_kafka_topic_t, kept until the client goes), or
   NULL: produce by name. Takes the state's lock: once per frame, not per message. */
void *rdk_topic(rdk_state_t *st, const char *topic);

/* rd_kafka_producev(topic handle or name, value, key, timestamp ms, copied): 0, or
   librdkafka's error code (then nothing was queued and no failure will be reported for
   it). */
int rdk_produce(rdk_state_t *st, const char *topic, void *rkt, const void *value, size_t len,
                const void *key, size_t keylen, int64_t ts_ms);

/* The module's functions of the bridge (bind_librdkafka, claim, take_failures, pending,
   produce), appended to the module's method table. */
extern PyMethodDef rdk_methods[];

#endif
