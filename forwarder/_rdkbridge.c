/*
 * forwarder/_rdkbridge.c: see _rdkbridge.h. Compiled into forwarder._fastroute, whose
 * shared object is also the librdkafka plugin (conf_init below).
 *
 * Lifecycle of one producer:
 *   Python: bind_librdkafka(confluent_kafka.libversion()[1])   once per process
 *   Python: confluent_kafka.Producer({..., "plugin.library.paths": <this .so>})
 *     librdkafka: conf_init(conf)   -> on_new / on_conf_dup interceptors on the conf
 *     librdkafka: on_new(rk)        -> a bridge state for rk (this thread's "just created")
 *   Python: claim()                 -> the handle (a capsule) of that state, or None
 *   router: rdk_produce(...)        -> rd_kafka_producev, no per-message opaque
 *   librdkafka threads: on_ack(rk, msg) for every message; a failed one of ours (no
 *     opaque) is copied to the state's failure list
 *   Python: take_failures(handle)   -> [(topic, value, key, error code)] (librdkafka
 *     reports no timestamp with a failed message; the caller knows the event time)
 *   librdkafka: on_destroy(rk)      -> the state forgets rk (produce falls back to Python)
 * A state is never freed: librdkafka may still acknowledge (purge) messages while it is
 * being destroyed, after on_destroy. It is ~100 bytes per producer instance; the failure
 * records go with the handle.
 */
#include "_rdkbridge.h" /* Python.h first; it defines _GNU_SOURCE (dl_iterate_phdr) */

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- librdkafka's public ABI (rdkafka.h) ------------------------------------------------- */

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef int rdk_err_t; /* rd_kafka_resp_err_t */

typedef struct { /* rd_kafka_message_t */
    rdk_err_t err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private; /* the produce opaque */
} rdk_message_t;

enum { /* rd_kafka_vtype_t */
    VT_END = 0,
    VT_TOPIC = 1,
    VT_RKT = 2,
    VT_VALUE = 4,
    VT_KEY = 5,
    VT_MSGFLAGS = 7,
    VT_TIMESTAMP = 8,
};
#define RDK_MSG_F_COPY 0x2
#define RDK_ERR_FAIL (-196)
#define RDK_NAME "torghut-fastroute"
#define RDK_MAX_TOPICS 32

typedef rdk_err_t(on_new_f)(rd_kafka_t *, const rd_kafka_conf_t *, void *, char *, size_t);
typedef rdk_err_t(on_conf_dup_f)(rd_kafka_conf_t *, const rd_kafka_conf_t *, size_t,
                                 const char **, void *);
typedef rdk_err_t(on_ack_f)(rd_kafka_t *, rdk_message_t *, void *);
typedef rdk_err_t(on_destroy_f)(rd_kafka_t *, void *);

static struct {
    int (*version)(void);
    rdk_err_t (*producev)(rd_kafka_t *, ...);
    rdk_err_t (*conf_add_on_new)(rd_kafka_conf_t *, const char *, on_new_f *, void *);
    rdk_err_t (*conf_add_on_conf_dup)(rd_kafka_conf_t *, const char *, on_conf_dup_f *,
                                      void *);
    rdk_err_t (*add_on_ack)(rd_kafka_t *, const char *, on_ack_f *, void *);
    rdk_err_t (*add_on_destroy)(rd_kafka_t *, const char *, on_destroy_f *, void *);
    const char *(*topic_name)(const rd_kafka_topic_t *);
    rd_kafka_topic_t *(*topic_new)(rd_kafka_t *, const char *, void *);
    void (*topic_destroy)(rd_kafka_topic_t *);
} rdk;
static atomic_int rdk_bound = 0;
static char rdk_path[4096];

/* ---- per-producer state ------------------------------------------------------------------ */

typedef struct failure {
    struct failure *next;
    char *topic;
    char *value;
    size_t len;
    char *key; /* NULL: no key */
    size_t key_len;
    rdk_err_t err;
} failure_t;

struct rdk_state {
    _Atomic(rd_kafka_t *) rk; /* NULL once rd_kafka_destroy() began */
    pthread_mutex_t lock;
    int claimed, released; /* under lock */
    failure_t *head, **tail;
    atomic_long pending; /* failures not yet taken */
    atomic_long lost;    /* failures that could not be copied (out of memory) */
    /* topic handles (under lock): producev by handle skips librdkafka's lookup of the topic
       by name (a write lock on the client) per message */
    int ntopics;
    char *topic_names[RDK_MAX_TOPICS];
    rd_kafka_topic_t *rkts[RDK_MAX_TOPICS];
};

static _Thread_local rdk_state_t *tl_created = NULL; /* on_new of this thread, not claimed */
static _Thread_local int tl_in_produce = 0; /* our producev is running on this thread */

#define CAPSULE "forwarder._fastroute.producer"

static void free_failure(failure_t *f)
{
    free(f->topic);
    free(f->value);
    free(f->key);
    free(f);
}

/* ---- interceptors (librdkafka calls them; no Python, no GIL) ---------------------------- */

static rdk_err_t on_ack(rd_kafka_t *rk, rdk_message_t *m, void *opaque)
{
    (void)rk;
    rdk_state_t *st = opaque;
    /* acked, or confluent_kafka's own message (its opaque), or a failure rd_kafka_producev
       is about to return to our caller (who handles it) */
    if (m->err == 0 || m->_private != NULL || tl_in_produce)
        return 0;
    failure_t *f = calloc(1, sizeof(*f));
    const char *topic = m->rkt != NULL ? rdk.topic_name(m->rkt) : "";
    if (f != NULL) {
        f->err = m->err;
        f->topic = strdup(topic != NULL ? topic : "");
        f->len = m->len;
        f->value = malloc(m->len ? m->len : 1);
        if (f->value != NULL && m->len)
            memcpy(f->value, m->payload, m->len);
        if (m->key != NULL) {
            f->key_len = m->key_len;
            f->key = malloc(m->key_len ? m->key_len : 1);
            if (f->key != NULL && m->key_len)
                memcpy(f->key, m->key, m->key_len);
        }
        if (f->topic == NULL || f->value == NULL || (m->key != NULL && f->key == NULL)) {
            free_failure(f);
            f = NULL;
        }
    }
    pthread_mutex_lock(&st->lock);
    if (f == NULL) {
        atomic_fetch_add(&st->lost, 1);
    } else if (st->claimed && !st->released) {
        *st->tail = f;
        st->tail = &f->next;
        atomic_fetch_add(&st->pending, 1);
        f = NULL;
    }
    pthread_mutex_unlock(&st->lock);
    if (f != NULL) /* nobody will take it */
        free_failure(f);
    return 0;
}

static rdk_err_t on_destroy(rd_kafka_t *rk, void *opaque)
{
    (void)rk;
    rdk_state_t *st = opaque;
    atomic_store(&st->rk, NULL);
    /* the application's topic handles go before the client does */
    pthread_mutex_lock(&st->lock);
    for (int j = 0; j < st->ntopics; j++) {
        rdk.topic_destroy(st->rkts[j]);
        free(st->topic_names[j]);
    }
    st->ntopics = 0;
    pthread_mutex_unlock(&st->lock);
    return 0;
}

static rdk_err_t on_new(rd_kafka_t *rk, const rd_kafka_conf_t *conf, void *opaque, char *errstr,
                        size_t errstr_size)
{
    (void)conf;
    (void)opaque;
    rdk_state_t *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(errstr, errstr_size, RDK_NAME ": out of memory");
        return RDK_ERR_FAIL;
    }
    pthread_mutex_init(&st->lock, NULL);
    st->tail = &st->head;
    atomic_store(&st->rk, rk);
    rdk_err_t err = rdk.add_on_ack(rk, RDK_NAME, on_ack, st);
    if (!err)
        err = rdk.add_on_destroy(rk, RDK_NAME, on_destroy, st);
    if (err) {
        /* the producer still works, through confluent_kafka's produce (claim() -> None) */
        snprintf(errstr, errstr_size, RDK_NAME ": cannot add interceptors (error %d)", err);
        return err;
    }
    tl_created = st;
    return 0;
}

static rdk_err_t on_conf_dup(rd_kafka_conf_t *new_conf, const rd_kafka_conf_t *old_conf,
                             size_t filter_cnt, const char **filter, void *opaque)
{
    (void)old_conf;
    (void)filter_cnt;
    (void)filter;
    (void)opaque;
    /* interceptors are not copied with a configuration; a conflict means the plugin's own
       conf_init already ran on the copy */
    rdk.conf_add_on_new(new_conf, RDK_NAME, on_new, NULL);
    rdk.conf_add_on_conf_dup(new_conf, RDK_NAME, on_conf_dup, NULL);
    return 0;
}

/* librdkafka's plugin entry point (plugin.library.paths). */
__attribute__((visibility("default"))) rdk_err_t conf_init(rd_kafka_conf_t *conf,
                                                           void **plug_opaquep, char *errstr,
                                                           size_t errstr_size)
{
    (void)plug_opaquep;
    if (!atomic_load(&rdk_bound)) {
        snprintf(errstr, errstr_size,
                 RDK_NAME ": forwarder._fastroute.bind_librdkafka() was not called in this "
                          "process (or this is another copy of the library)");
        return RDK_ERR_FAIL;
    }
    rdk_err_t err = rdk.conf_add_on_new(conf, RDK_NAME, on_new, NULL);
    if (!err)
        err = rdk.conf_add_on_conf_dup(conf, RDK_NAME, on_conf_dup, NULL);
    if (err)
        snprintf(errstr, errstr_size, RDK_NAME ": cannot add interceptors (error %d)", err);
    return err;
}

/* ---- the router's produce --------------------------------------------------------------- */

rdk_state_t *rdk_from_handle(PyObject *handle)
{
    if (handle == NULL || !PyCapsule_IsValid(handle, CAPSULE))
        return NULL;
    rdk_state_t *st = PyCapsule_GetPointer(handle, CAPSULE);
    return atomic_load(&st->rk) != NULL ? st : NULL;
}

void *rdk_topic(rdk_state_t *st, const char *topic)
{
    void *rkt = NULL;
    pthread_mutex_lock(&st->lock);
    rd_kafka_t *rk = atomic_load(&st->rk);
    for (int j = 0; j < st->ntopics && rkt == NULL; j++)
        if (strcmp(st->topic_names[j], topic) == 0)
            rkt = st->rkts[j];
    if (rkt == NULL && rk != NULL && st->ntopics < RDK_MAX_TOPICS) {
        char *name = strdup(topic);
        if (name != NULL && (rkt = rdk.topic_new(rk, topic, NULL)) != NULL) {
            st->topic_names[st->ntopics] = name;
            st->rkts[st->ntopics++] = rkt;
        } else {
            free(name);
        }
    }
    pthread_mutex_unlock(&st->lock);
    return rkt;
}

int rdk_produce(rdk_state_t *st, const char *topic, void *rkt, const void *value, size_t len,
                const void *key, size_t keylen, int64_t ts_ms)
{
    rd_kafka_t *rk = atomic_load(&st->rk);
    if (rk == NULL)
        return RDK_ERR_FAIL;
    /* by handle when there is one, else by name (the same record) */
    int vt = rkt != NULL ? VT_RKT : VT_TOPIC;
    void *where = rkt != NULL ? rkt : (void *)topic;
    rdk_err_t err;
    tl_in_produce = 1;
    if (key != NULL)
        err = rdk.producev(rk, vt, where, VT_VALUE, (void *)value, len, VT_KEY, key, keylen,
                           VT_TIMESTAMP, ts_ms, VT_MSGFLAGS, RDK_MSG_F_COPY, VT_END);
    else
        err = rdk.producev(rk, vt, where, VT_VALUE, (void *)value, len, VT_TIMESTAMP, ts_ms,
                           VT_MSGFLAGS, RDK_MSG_F_COPY, VT_END);
    tl_in_produce = 0;
    return err;
}

/* ---- Python functions ------------------------------------------------------------------- */

typedef struct {
    int want;
    int found;
    int mismatch; /* a librdkafka of another version */
    char path[4096];
} find_t;

static int find_lib(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    find_t *q = data;
    const char *name = info->dlpi_name;
    if (name == NULL || name[0] == '\0')
        return 0;
    const char *base = strrchr(name, '/');
    base = base != NULL ? base + 1 : name;
    if (strncmp(base, "librdkafka", 10) != 0 || strncmp(base, "librdkafka++", 12) == 0)
        return 0;
    void *h = dlopen(name, RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL)
        return 0;
    int (*version)(void) = (int (*)(void))dlsym(h, "rd_kafka_version");
    int ok = version != NULL && version() == q->want;
    dlclose(h); /* NOLOAD took a reference; the library stays loaded by its owner */
    if (!ok) {
        q->mismatch = 1;
        return 0;
    }
    snprintf(q->path, sizeof(q->path), "%s", name);
    q->found = 1;
    return 1;
}

static PyObject *bind_librdkafka(PyObject *self, PyObject *arg)
{
    (void)self;
    long want = PyLong_AsLong(arg);
    if (want == -1 && PyErr_Occurred())
        return NULL;
    if (atomic_load(&rdk_bound))
        return PyUnicode_DecodeFSDefault(rdk_path);
    find_t q = {.want = (int)want};
    dl_iterate_phdr(find_lib, &q);
    if (!q.found) {
        char msg[160];
        snprintf(msg, sizeof(msg), "no loaded librdkafka of version 0x%08lx%s: import "
                 "confluent_kafka first", (unsigned long)want,
                 q.mismatch ? " (another version is loaded)" : "");
        PyErr_SetString(PyExc_OSError, msg);
        return NULL;
    }
    void *h = dlopen(q.path, RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL) {
        PyErr_Format(PyExc_OSError, "dlopen(%s): %s", q.path, dlerror());
        return NULL;
    }
    /* h keeps its reference: the bound functions stay valid for the process */
#define SYM(field, name)                                                                       \
    if ((*(void **)&rdk.field = dlsym(h, name)) == NULL) {                                     \
        PyErr_Format(PyExc_OSError, "%s has no %s", q.path, name);                              \
        return NULL;                                                                           \
    }
    SYM(version, "rd_kafka_version")
    SYM(producev, "rd_kafka_producev")
    SYM(conf_add_on_new, "rd_kafka_conf_interceptor_add_on_new")
    SYM(conf_add_on_conf_dup, "rd_kafka_conf_interceptor_add_on_conf_dup")
    SYM(add_on_ack, "rd_kafka_interceptor_add_on_acknowledgement")
    SYM(add_on_destroy, "rd_kafka_interceptor_add_on_destroy")
    SYM(topic_name, "rd_kafka_topic_name")
    SYM(topic_new, "rd_kafka_topic_new")
    SYM(topic_destroy, "rd_kafka_topic_destroy")
#undef SYM
    snprintf(rdk_path, sizeof(rdk_path), "%s", q.path);
    atomic_store(&rdk_bound, 1);
    return PyUnicode_DecodeFSDefault(rdk_path);
}

static void free_failures(failure_t *f)
{
    while (f != NULL) {
        failure_t *next = f->next;
        free_failure(f);
        f = next;
    }
}

static void handle_release(PyObject *capsule)
{
    rdk_state_t *st = PyCapsule_GetPointer(capsule, CAPSULE);
    if (st == NULL) {
        PyErr_Clear();
        return;
    }
    pthread_mutex_lock(&st->lock);
    st->released = 1;
    failure_t *f = st->head;
    st->head = NULL;
    st->tail = &st->head;
    atomic_store(&st->pending, 0);
    pthread_mutex_unlock(&st->lock);
    free_failures(f);
}

static PyObject *claim(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    rdk_state_t *st = tl_created;
    tl_created = NULL;
    if (st == NULL || atomic_load(&st->rk) == NULL)
        Py_RETURN_NONE;
    PyObject *capsule = PyCapsule_New(st, CAPSULE, handle_release);
    if (capsule == NULL)
        return NULL;
    pthread_mutex_lock(&st->lock);
    st->claimed = 1;
    pthread_mutex_unlock(&st->lock);
    return capsule;
}

static rdk_state_t *state_arg(PyObject *handle)
{
    if (!PyCapsule_IsValid(handle, CAPSULE)) {
        PyErr_SetString(PyExc_TypeError, "not a producer handle of forwarder._fastroute.claim()");
        return NULL;
    }
    return PyCapsule_GetPointer(handle, CAPSULE);
}

static PyObject *take_failures(PyObject *self, PyObject *handle)
{
    (void)self;
    rdk_state_t *st = state_arg(handle);
    if (st == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL || atomic_load(&st->pending) == 0)
        return out;
    pthread_mutex_lock(&st->lock);
    failure_t *f = st->head;
    st->head = NULL;
    st->tail = &st->head;
    atomic_store(&st->pending, 0);
    pthread_mutex_unlock(&st->lock);
    int ok = 1;
    for (failure_t *g = f; g != NULL && ok; g = g->next) {
        PyObject *key = g->key != NULL ? PyBytes_FromStringAndSize(g->key, (Py_ssize_t)g->key_len)
                                       : Py_NewRef(Py_None);
        PyObject *item = key == NULL ? NULL
                                     : Py_BuildValue("(sy#Ni)", g->topic, g->value,
                                                     (Py_ssize_t)g->len, key, (int)g->err);
        ok = item != NULL && PyList_Append(out, item) == 0;
        Py_XDECREF(item);
    }
    free_failures(f);
    if (!ok) {
        /* out of memory while handing them over: they are lost, and counted */
        atomic_fetch_add(&st->lost, 1);
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *pending(PyObject *self, PyObject *handle)
{
    (void)self;
    rdk_state_t *st = state_arg(handle);
    if (st == NULL)
        return NULL;
    return PyLong_FromLong(atomic_load(&st->pending));
}

static PyObject *lost(PyObject *self, PyObject *handle)
{
    (void)self;
    rdk_state_t *st = state_arg(handle);
    if (st == NULL)
        return NULL;
    return PyLong_FromLong(atomic_load(&st->lost));
}

static PyObject *produce(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "produce(handle, topic, value, key, timestamp_ms)");
        return NULL;
    }
    rdk_state_t *st = state_arg(args[0]);
    if (st == NULL)
        return NULL;
    Py_ssize_t tlen;
    const char *topic = PyUnicode_AsUTF8AndSize(args[1], &tlen);
    if (topic == NULL)
        return NULL;
    if (!PyBytes_Check(args[2]) || (args[3] != Py_None && !PyBytes_Check(args[3]))) {
        PyErr_SetString(PyExc_TypeError, "value must be bytes, key bytes or None");
        return NULL;
    }
    long long ts = PyLong_AsLongLong(args[4]);
    if (ts == -1 && PyErr_Occurred())
        return NULL;
    const char *key = args[3] == Py_None ? NULL : PyBytes_AS_STRING(args[3]);
    size_t klen = args[3] == Py_None ? 0 : (size_t)PyBytes_GET_SIZE(args[3]);
    int err = rdk_produce(st, topic, rdk_topic(st, topic), PyBytes_AS_STRING(args[2]),
                          (size_t)PyBytes_GET_SIZE(args[2]), key, klen, ts);
    return PyLong_FromLong(err);
}

PyMethodDef rdk_methods[] = {
    {"bind_librdkafka", bind_librdkafka, METH_O,
     "bind_librdkafka(version) -> path: resolve the loaded librdkafka of that version "
     "(confluent_kafka.libversion()[1]); this module is then usable as its plugin."},
    {"claim", claim, METH_NOARGS,
     "claim() -> handle | None: the bridge of the producer this thread just created with this "
     "module in plugin.library.paths (None: there is none)."},
    {"take_failures", take_failures, METH_O,
     "take_failures(handle) -> [(topic, value, key, error_code)]: deliveries of "
     "natively produced messages that failed for good, oldest first; each is returned once."},
    {"pending", pending, METH_O, "pending(handle) -> int: failures not yet taken."},
    {"lost", lost, METH_O,
     "lost(handle) -> int: failures that could not be recorded (out of memory)."},
    {"produce", (PyCFunction)(void (*)(void))produce, METH_FASTCALL,
     "produce(handle, topic, value, key, timestamp_ms) -> error code (0: queued). No "
     "delivery callback: failures come back through take_failures()."},
    {NULL, NULL, 0, NULL},
};
