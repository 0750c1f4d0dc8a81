/*
 * forwarder._fastroute: the native fast path of EnvelopeRouter.route for msgpack frames.
 *
 * route(router, raw, ingest_ns, now, max_future_ns) takes the raw msgpack frame (an array of
 * messages) and
 *
 *   phase 1  parses and validates the WHOLE frame without touching any state. Each element
 *            is either a well-formed trade ("T":"t") or quote ("T":"q") that the Python
 *            router would forward without a reject or a coercion (encoded here; prices
 *            and sizes in range: trade price in [price_min, price_max], quote prices 0 or
 *            in that range, sizes in [0, size_max] (set_limits(); NaN is in no range),
 *            event time at most max_future_ns past ingest_ns), or any
 *            other object msgpack certainly decodes (another type, a control message, a
 *            wrong field...: left to Python). Malformed or truncated msgpack anywhere,
 *            trailing bytes, or no trade/quote at all: False, nothing was done, and the
 *            caller decodes the frame and passes it to route().
 *   phase 2  does what EnvelopeRouter.route does, message by message in frame order, with
 *            route()'s own frame state (router._begin): trades and quotes here (slot per
 *            (type, symbol), new ones through router._slot; dedup against the same
 *            DedupCache set and deque; seq; the bytes of avro_writer.envelope, in the
 *            layout of shared/envelope_layout.py, whose union tags and tail configure()
 *            passes; trace ids;
 *            rd_kafka_producev on the producer's bridge (producer.native, _rdkbridge.c),
 *            or producer.raw_produce(topic, value, key, timestamp=event_ms) without one
 *            or when librdkafka refused (BufferError -> router._blocking_produce), every
 *            run of other messages through
 *            router._route_spans (decoded from their bytes, route()'s loop); then
 *            router._finish, route()'s finally block.
 *
 * Every read is bounds-checked: hostile bytes can only make phase 1 return False.
 * The Python router stays the reference (tests/unit/test_forwarder_fastroute.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_rdkbridge.h"

/* ---- configuration (configure()) ------------------------------------------------------ */

static int cfg_ready = 0;
static Py_ssize_t cfg_nch, cfg_t_idx, cfg_q_idx;
/* forwarder.router.configure_native passes them: the payload union indexes of Trade and
   Quote and the tail after the trace id (shared/envelope_layout.py), the trailer before the
   trace id (forwarder/avro_writer.py) */
static Py_ssize_t cfg_trade_branch, cfg_quote_branch;
static char cfg_trailer[64];
static char cfg_tail[64];
static Py_ssize_t cfg_tail_len;
/* confluent_kafka.Producer: its C produce() is called with positional arguments */
static PyObject *cfg_producer_type = NULL;
static PyObject *minus_one = NULL;
static Py_ssize_t cfg_trailer_len;
/* plausibility limits (shared/limits.py), set_limits(): forwarder.router.set_limits keeps
   them equal to the Python encoder's (forwarder/avro_writer.py) */
static double lim_pmin = 1e-6, lim_pmax = 1e7, lim_smax = 1e10;

/* interned names: every Python attribute, method, dict key and keyword name this file
   uses, in NAMES below (tests/unit/test_forwarder_fastroute_names.py checks each against
   the real objects and the Protocols of _fastroute.pyi) */
static PyObject *n_headers, *n_topics, *n_slots, *n_dedup, *n_producer, *n_raw_produce,
    *n_trace_ids, *n_n, *n_prefix, *n_seqs, *n_issued, *n_floor, *n_keys, *n_order, *n_append,
    *n_slot, *n_blocking_produce, *n_begin, *n_finish, *n_route_spans, *n_native_reject, *n_n0,
    *n_n_t, *n_n_q, *n_dup_t, *n_dup_q, *n_event_ts, *n_fn, *n_native, *n_c_tq, *n_tq_max, *k_t,
    *k_q, *n_timestamp, *kwnames_ts;

/* NAMES: {variable, owner (the Protocol in _fastroute.pyi that declares it; "key": of the
   router's per-type tables; "keyword": of raw_produce), name} */
static const struct {
    PyObject **var;
    const char *owner;
    const char *name;
} NAMES[] = {
    {&n_headers, "Router", "headers"},
    {&n_topics, "Router", "topics"},
    {&n_slots, "Router", "_slots"},
    {&n_dedup, "Router", "dedup"},
    {&n_producer, "Router", "producer"},
    {&n_trace_ids, "Router", "trace_ids"},
    {&n_seqs, "Router", "seqs"},
    {&n_slot, "Router", "_slot"},
    {&n_blocking_produce, "Router", "_blocking_produce"},
    {&n_begin, "Router", "_begin"},
    {&n_finish, "Router", "_finish"},
    {&n_route_spans, "Router", "_route_spans"},
    {&n_native_reject, "Router", "_native_reject"},
    {&n_raw_produce, "Producer", "raw_produce"},
    {&n_native, "Producer", "native"},
    {&n_n, "TraceIds", "_n"},
    {&n_prefix, "TraceIds", "prefix"},
    {&n_issued, "Seqs", "issued"},
    {&n_floor, "Seqs", "floor"},
    {&n_keys, "Dedup", "keys"},
    {&n_order, "Dedup", "order"},
    {&n_append, "DedupOrder", "append"},
    {&n_n0, "Frame", "n0"},
    {&n_n_t, "Frame", "n_t"},
    {&n_n_q, "Frame", "n_q"},
    {&n_dup_t, "Frame", "dup_t"},
    {&n_dup_q, "Frame", "dup_q"},
    {&n_event_ts, "Frame", "event_ts"},
    {&n_fn, "Frame", "n"},
    {&n_c_tq, "Frame", "c_tq"},
    {&n_tq_max, "Frame", "tq_max"},
    {&k_t, "key", "t"},
    {&k_q, "key", "q"},
    {&n_timestamp, "keyword", "timestamp"},
};

/* ---- msgpack reading ------------------------------------------------------------------ */

enum { MP_NIL, MP_BOOL, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT };

typedef struct {
    int type;
    int big;      /* MP_INT: unsigned value above INT64_MAX (u holds it) */
    int64_t i;    /* MP_INT (when !big) */
    uint64_t u;
    double f;     /* MP_FLOAT */
    const uint8_t *ptr; /* MP_STR/MP_BIN/MP_EXT payload */
    uint32_t len;       /* payload length, or element count for MP_ARRAY/MP_MAP */
    int8_t ext;
} mpobj;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} reader;

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t be64(const uint8_t *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

/* Strict UTF-8 as CPython's decoder accepts it (no overlongs, surrogates, > U+10FFFF). */
static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c < 0xC2)
            return 0;
        if (c < 0xE0) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
            continue;
        }
        if (c < 0xF0) {
            if (i + 2 >= n)
                return 0;
            uint8_t c1 = s[i + 1];
            if (c == 0xE0 ? (c1 < 0xA0 || c1 > 0xBF)
                          : c == 0xED ? (c1 < 0x80 || c1 > 0x9F) : (c1 & 0xC0) != 0x80)
                return 0;
            if ((s[i + 2] & 0xC0) != 0x80)
                return 0;
            i += 3;
            continue;
        }
        if (c < 0xF5) {
            if (i + 3 >= n)
                return 0;
            uint8_t c1 = s[i + 1];
            if (c == 0xF0 ? (c1 < 0x90 || c1 > 0xBF)
                          : c == 0xF4 ? (c1 < 0x80 || c1 > 0x8F) : (c1 & 0xC0) != 0x80)
                return 0;
            if ((s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            i += 4;
            continue;
        }
        return 0;
    }
    return 1;
}

/* Payload of `n` bytes at the cursor; 0 when truncated. */
static inline int take(reader *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return 0;
    *out = r->p;
    r->p += n;
    return 1;
}

/* One object header (and the payload of str/bin/ext; containers are not descended).
   Returns 1, or 0 for truncated input, a reserved byte or invalid UTF-8. */
static int next(reader *r, mpobj *o)
{
    const uint8_t *q;
    if (r->p >= r->end)
        return 0;
    uint8_t b = *r->p++;
    o->big = 0;
    if (b <= 0x7F) {
        o->type = MP_INT;
        o->i = b;
        return 1;
    }
    if (b >= 0xE0) {
        o->type = MP_INT;
        o->i = (int8_t)b;
        return 1;
    }
    if ((b & 0xF0) == 0x80) {
        o->type = MP_MAP;
        o->len = b & 0x0F;
        return 1;
    }
    if ((b & 0xF0) == 0x90) {
        o->type = MP_ARRAY;
        o->len = b & 0x0F;
        return 1;
    }
    if ((b & 0xE0) == 0xA0) {
        o->type = MP_STR;
        o->len = b & 0x1F;
        goto str_payload;
    }
    switch (b) {
    case 0xC0:
        o->type = MP_NIL;
        return 1;
    case 0xC2:
    case 0xC3:
        o->type = MP_BOOL;
        o->i = b == 0xC3;
        return 1;
    case 0xC4:
    case 0xC5:
    case 0xC6: {
        size_t w = b == 0xC4 ? 1 : b == 0xC5 ? 2 : 4;
        if (!take(r, w, &q))
            return 0;
        o->len = w == 1 ? q[0] : w == 2 ? be16(q) : be32(q);
        o->type = MP_BIN;
        return take(r, o->len, &o->ptr);
    }
    case 0xC7:
    case 0xC8:
    case 0xC9: {
        size_t w = b == 0xC7 ? 1 : b == 0xC8 ? 2 : 4;
        if (!take(r, w + 1, &q))
            return 0;
        o->len = w == 1 ? q[0] : w == 2 ? be16(q) : be32(q);
        o->ext = (int8_t)q[w];
        o->type = MP_EXT;
        return take(r, o->len, &o->ptr);
    }
    case 0xCA:
        if (!take(r, 4, &q))
            return 0;
        {
            uint32_t bits = be32(q);
            float f;
            memcpy(&f, &bits, 4);
            o->f = (double)f;
        }
        o->type = MP_FLOAT;
        return 1;
    case 0xCB:
        if (!take(r, 8, &q))
            return 0;
        {
            uint64_t bits = be64(q);
            memcpy(&o->f, &bits, 8);
        }
        o->type = MP_FLOAT;
        return 1;
    case 0xCC:
        if (!take(r, 1, &q))
            return 0;
        o->type = MP_INT;
        o->i = q[0];
        return 1;
    case 0xCD:
        if (!take(r, 2, &q))
            return 0;
        o->type = MP_INT;
        o->i = be16(q);
        return 1;
    case 0xCE:
        if (!take(r, 4, &q))
            return 0;
        o->type = MP_INT;
        o->i = be32(q);
        return 1;
    case 0xCF:
        if (!take(r, 8, &q))
            return 0;
        o->type = MP_INT;
        o->u = be64(q);
        if (o->u > (uint64_t)INT64_MAX)
            o->big = 1;
        else
            o->i = (int64_t)o->u;
        return 1;
    case 0xD0:
        if (!take(r, 1, &q))
            return 0;
        o->type = MP_INT;
        o->i = (int8_t)q[0];
        return 1;
    case 0xD1:
        if (!take(r, 2, &q))
            return 0;
        o->type = MP_INT;
        o->i = (int16_t)be16(q);
        return 1;
    case 0xD2:
        if (!take(r, 4, &q))
            return 0;
        o->type = MP_INT;
        o->i = (int32_t)be32(q);
        return 1;
    case 0xD3:
        if (!take(r, 8, &q))
            return 0;
        o->type = MP_INT;
        o->i = (int64_t)be64(q);
        return 1;
    case 0xD4:
    case 0xD5:
    case 0xD6:
    case 0xD7:
    case 0xD8:
        if (!take(r, 1, &q))
            return 0;
        o->ext = (int8_t)q[0];
        o->len = 1u << (b - 0xD4);
        o->type = MP_EXT;
        return take(r, o->len, &o->ptr);
    case 0xD9:
    case 0xDA:
    case 0xDB: {
        size_t w = b == 0xD9 ? 1 : b == 0xDA ? 2 : 4;
        if (!take(r, w, &q))
            return 0;
        o->len = w == 1 ? q[0] : w == 2 ? be16(q) : be32(q);
        o->type = MP_STR;
        goto str_payload;
    }
    case 0xDC:
    case 0xDE:
        if (!take(r, 2, &q))
            return 0;
        o->len = be16(q);
        o->type = b == 0xDC ? MP_ARRAY : MP_MAP;
        return 1;
    case 0xDD:
    case 0xDF:
        if (!take(r, 4, &q))
            return 0;
        o->len = be32(q);
        o->type = b == 0xDD ? MP_ARRAY : MP_MAP;
        return 1;
    default: /* 0xC1: never used */
        return 0;
    }
str_payload:
    if (!take(r, o->len, &o->ptr))
        return 0;
    return utf8_ok(o->ptr, o->len);
}

/* ---- one message ---------------------------------------------------------------------- */

enum {
    F_T, F_S, F_t, F_i, F_x, F_p, F_s, F_c, F_z, F_bx, F_bp, F_bs, F_ax, F_ap, F_as, F_N
};

#define KIND_PY 2

typedef struct {
    int kind; /* 0 trade, 1 quote, KIND_PY: routed by EnvelopeRouter._route_spans */
    int sym;  /* index into the frame's symbol table */
    int64_t t, i;
    double d[4]; /* trade: p, s; quote: bp, bs, ap, as */
    const uint8_t *x, *ax, *z, *c; /* x: trade x or quote bx; c: first array element */
    uint32_t x_len, ax_len, z_len, c_n;
    size_t c_bytes; /* Avro bytes of the condition strings */
    Py_ssize_t start, end; /* the map's bytes in the frame */
} msg_t;

typedef struct {
    const uint8_t *p;
    uint32_t len;
    PyObject *str; /* owned */
} sym_t;

static int field_of(const uint8_t *k, uint32_t n)
{
    if (n == 1) {
        switch (k[0]) {
        case 'T': return F_T;
        case 'S': return F_S;
        case 't': return F_t;
        case 'i': return F_i;
        case 'x': return F_x;
        case 'p': return F_p;
        case 's': return F_s;
        case 'c': return F_c;
        case 'z': return F_z;
        }
        return -1;
    }
    if (n == 2) {
        if (k[0] == 'b') {
            if (k[1] == 'x') return F_bx;
            if (k[1] == 'p') return F_bp;
            if (k[1] == 's') return F_bs;
        } else if (k[0] == 'a') {
            if (k[1] == 'x') return F_ax;
            if (k[1] == 'p') return F_ap;
            if (k[1] == 's') return F_as;
        }
    }
    return -1;
}

/* a number struct.pack("<d") turns into this double, exactly; 0 for anything else */
static int as_double(const mpobj *o, double *out)
{
    if (o->type == MP_FLOAT) {
        *out = o->f;
        return 1;
    }
    if (o->type == MP_INT && !o->big && o->i <= ((int64_t)1 << 53) && o->i >= -((int64_t)1 << 53)) {
        *out = (double)o->i;
        return 1;
    }
    return 0;
}

/* the msgpack Timestamp ext (-1) or an int, as msgpack.unpackb(timestamp=2) gives it */
static int as_event_ns(const mpobj *o, int64_t *out)
{
    if (o->type == MP_INT) {
        if (o->big)
            return 0;
        *out = o->i;
        return 1;
    }
    if (o->type != MP_EXT || o->ext != -1)
        return 0;
    int64_t sec;
    uint32_t ns;
    if (o->len == 4) {
        sec = be32(o->ptr);
        ns = 0;
    } else if (o->len == 8) {
        uint64_t v = be64(o->ptr);
        ns = (uint32_t)(v >> 34);
        sec = (int64_t)(v & 0x3FFFFFFFFull);
    } else if (o->len == 12) {
        ns = be32(o->ptr);
        sec = (int64_t)be64(o->ptr + 4);
    } else {
        return 0;
    }
    if (ns > 999999999u)
        return 0;
    int64_t v;
    if (__builtin_mul_overflow(sec, (int64_t)1000000000, &v) ||
        __builtin_add_overflow(v, (int64_t)ns, &v))
        return 0;
    *out = v;
    return 1;
}

/* Parse one map at the cursor into m (symbol text: sym_p, sym_len); 0 = not for us. */
static int parse_msg(reader *r, msg_t *m, int64_t limit, const uint8_t **sym_p, uint32_t *sym_len)
{
    mpobj o, f[F_N];
    int have[F_N] = {0};
    memset(m, 0, sizeof(*m));
    if (!next(r, &o) || o.type != MP_MAP)
        return 0;
    for (uint32_t k = 0; k < o.len; k++) {
        mpobj key, val;
        if (!next(r, &key) || key.type != MP_STR)
            return 0; /* msgpack refuses non-str/bytes keys; bytes keys: leave to Python */
        int idx = field_of(key.ptr, key.len);
        if (!next(r, &val))
            return 0;
        if (val.type == MP_ARRAY) {
            /* only "c" may hold an array: of strings */
            if (idx != F_c)
                return 0;
            val.ptr = r->p;
            size_t bytes = 0;
            for (uint32_t j = 0; j < val.len; j++) {
                mpobj e;
                if (!next(r, &e) || e.type != MP_STR)
                    return 0;
                bytes += 10 + e.len;
            }
            m->c_bytes = bytes;
        } else if (val.type == MP_MAP || (val.type == MP_EXT && idx != F_t)) {
            return 0;
        }
        if (idx >= 0) {
            if (have[idx])
                return 0; /* duplicate key: last one wins in Python; not worth mimicking */
            have[idx] = 1;
            f[idx] = val;
        }
    }
    if (!have[F_T] || f[F_T].type != MP_STR || f[F_T].len != 1)
        return 0;
    int kind;
    if (f[F_T].ptr[0] == 't')
        kind = 0;
    else if (f[F_T].ptr[0] == 'q')
        kind = 1;
    else
        return 0;
    m->kind = kind;
    /* S: a non-empty string */
    if (!have[F_S] || f[F_S].type != MP_STR || f[F_S].len == 0)
        return 0;
    *sym_p = f[F_S].ptr;
    *sym_len = f[F_S].len;
    /* t: 0 < t <= min(ingest + max_future_ns, 2**63 - 1) */
    if (!have[F_t] || !as_event_ns(&f[F_t], &m->t) || m->t <= 0 || m->t > limit)
        return 0;
    /* c: absent, nil or an array of strings */
    if (have[F_c] && f[F_c].type != MP_NIL) {
        if (f[F_c].type != MP_ARRAY)
            return 0;
        m->c = f[F_c].ptr;
        m->c_n = f[F_c].len;
    } else {
        m->c = NULL;
        m->c_n = 0;
        m->c_bytes = 0;
    }
    /* z: absent ("") or a string */
    if (have[F_z]) {
        if (f[F_z].type != MP_STR)
            return 0;
        m->z = f[F_z].ptr;
        m->z_len = f[F_z].len;
    } else {
        m->z = (const uint8_t *)"";
        m->z_len = 0;
    }
    if (kind == 0) {
        if (!have[F_i] || f[F_i].type != MP_INT || f[F_i].big)
            return 0;
        m->i = f[F_i].i;
        if (!have[F_x] || f[F_x].type != MP_STR)
            return 0;
        m->x = f[F_x].ptr;
        m->x_len = f[F_x].len;
        if (!have[F_p] || !as_double(&f[F_p], &m->d[0]) || !have[F_s] ||
            !as_double(&f[F_s], &m->d[1]))
            return 0;
        /* price in [pmin, pmax] and size in [0, smax] (NaN fails every comparison): anything
           else is Python's to reject (invalid_price / invalid_size) */
        if (!(m->d[0] >= lim_pmin && m->d[0] <= lim_pmax) || !(m->d[1] >= 0.0 && m->d[1] <= lim_smax))
            return 0;
    } else {
        if (!have[F_bx] || f[F_bx].type != MP_STR || !have[F_ax] || f[F_ax].type != MP_STR)
            return 0;
        m->x = f[F_bx].ptr;
        m->x_len = f[F_bx].len;
        m->ax = f[F_ax].ptr;
        m->ax_len = f[F_ax].len;
        if (!have[F_bp] || !as_double(&f[F_bp], &m->d[0]) || !have[F_bs] ||
            !as_double(&f[F_bs], &m->d[1]) || !have[F_ap] || !as_double(&f[F_ap], &m->d[2]) ||
            !have[F_as] || !as_double(&f[F_as], &m->d[3]))
            return 0;
        /* prices 0 (a one-sided quote) or in [pmin, pmax], sizes in [0, smax] (d: bp, bs, ap,
           as), else Python rejects it */
        for (int j = 0; j < 4; j += 2)
            if (!(m->d[j] == 0.0 || (m->d[j] >= lim_pmin && m->d[j] <= lim_pmax)) ||
                !(m->d[j + 1] >= 0.0 && m->d[j + 1] <= lim_smax))
                return 0;
    }
    return 1;
}

/* Skip one object msgpack.unpackb(timestamp=2, use_list=False) certainly decodes (a
   conservative subset: str map keys only, Timestamp ext checked, other ext codes 0..127,
   nesting <= 32); 0 for anything else. */
static int skip_valid(reader *r, int depth)
{
    mpobj o;
    if (depth > 32 || !next(r, &o))
        return 0;
    switch (o.type) {
    case MP_ARRAY:
        for (uint32_t k = 0; k < o.len; k++)
            if (!skip_valid(r, depth + 1))
                return 0;
        return 1;
    case MP_MAP:
        for (uint32_t k = 0; k < o.len; k++) {
            mpobj key;
            if (!next(r, &key) || key.type != MP_STR || !skip_valid(r, depth + 1))
                return 0;
        }
        return 1;
    case MP_EXT:
        if (o.ext == -1) {
            if (o.len == 4)
                return 1;
            if (o.len == 8)
                return (be64(o.ptr) >> 34) <= 999999999u;
            if (o.len == 12)
                return be32(o.ptr) <= 999999999u;
            return 0;
        }
        return o.ext >= 0; /* msgpack.ExtType refuses negative codes */
    default:
        return 1;
    }
}

/* ---- Avro writing --------------------------------------------------------------------- */

static inline char *put_long(char *o, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        *o++ = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *o++ = (char)z;
    return o;
}

static inline char *put_bytes(char *o, const void *p, size_t n)
{
    memcpy(o, p, n);
    return o + n;
}

static inline char *put_string(char *o, const uint8_t *p, uint32_t n)
{
    o = put_long(o, n);
    return put_bytes(o, p, n);
}

static inline char *put_double(char *o, double d)
{
    PyFloat_Pack8(d, (char *)o, 1); /* struct.pack("<d"), bit for bit */
    return o + 8;
}

/* ---- helpers -------------------------------------------------------------------------- */

static PyObject *item(PyObject *mapping, PyObject *key)
{
    /* mapping[key] as a new reference (dicts: no copy of the lookup semantics needed) */
    return PyObject_GetItem(mapping, key);
}

static int get_i64(PyObject *obj, PyObject *name, int64_t *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    if (!PyLong_CheckExact(v)) {
        Py_DECREF(v);
        PyErr_SetString(PyExc_TypeError, "expected an int");
        return -1;
    }
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "counter does not fit 64 bits");
        return -1;
    }
    *out = x;
    return 0;
}

#define MAX_SEQ ((int64_t)1 << 62)

/* ---- route ---------------------------------------------------------------------------- */

typedef struct {
    PyObject *slots, *seen, *keep, *dedup, *order, *topic, *head; /* owned; head = header+ingest */
    int64_t order_len0;
    const char *topic_c; /* topic's UTF-8 (with a bridge) */
    void *rkt;           /* the bridge's handle of topic, or NULL */
} side_t;

static void side_clear(side_t *s)
{
    Py_CLEAR(s->slots);
    Py_CLEAR(s->seen);
    Py_CLEAR(s->keep);
    Py_CLEAR(s->dedup);
    Py_CLEAR(s->order);
    Py_CLEAR(s->topic);
    Py_CLEAR(s->head);
}

static int side_load(side_t *s, PyObject *router, PyObject *kind, const char *ingest,
                     Py_ssize_t ingest_len)
{
    PyObject *tmp = NULL, *hdr = NULL;
    if ((tmp = PyObject_GetAttr(router, n_slots)) == NULL)
        return -1;
    s->slots = item(tmp, kind);
    Py_DECREF(tmp);
    if (s->slots == NULL)
        return -1;
    if (!PyDict_Check(s->slots)) {
        PyErr_SetString(PyExc_TypeError, "router._slots tables must be dicts");
        return -1;
    }
    if ((tmp = PyObject_GetAttr(router, n_dedup)) == NULL)
        return -1;
    s->dedup = item(tmp, kind);
    Py_DECREF(tmp);
    if (s->dedup == NULL)
        return -1;
    if ((s->seen = PyObject_GetAttr(s->dedup, n_keys)) == NULL)
        return -1;
    if (!PyAnySet_Check(s->seen)) {
        PyErr_SetString(PyExc_TypeError, "DedupCache.keys must be a set");
        return -1;
    }
    if ((s->order = PyObject_GetAttr(s->dedup, n_order)) == NULL)
        return -1;
    if ((s->keep = PyObject_GetAttr(s->order, n_append)) == NULL)
        return -1;
    Py_ssize_t olen = PyObject_Size(s->order);
    if (olen < 0)
        return -1;
    s->order_len0 = olen;
    if ((tmp = PyObject_GetAttr(router, n_topics)) == NULL)
        return -1;
    s->topic = item(tmp, kind);
    Py_DECREF(tmp);
    if (s->topic == NULL)
        return -1;
    if ((tmp = PyObject_GetAttr(router, n_headers)) == NULL)
        return -1;
    hdr = item(tmp, kind);
    Py_DECREF(tmp);
    if (hdr == NULL)
        return -1;
    if (!PyBytes_Check(hdr)) {
        Py_DECREF(hdr);
        PyErr_SetString(PyExc_TypeError, "router.headers values must be bytes");
        return -1;
    }
    Py_ssize_t hl = PyBytes_GET_SIZE(hdr);
    s->head = PyBytes_FromStringAndSize(NULL, hl + ingest_len);
    if (s->head != NULL) {
        memcpy(PyBytes_AS_STRING(s->head), PyBytes_AS_STRING(hdr), hl);
        memcpy(PyBytes_AS_STRING(s->head) + hl, ingest, ingest_len);
    }
    Py_DECREF(hdr);
    return s->head == NULL ? -1 : 0;
}

/* the seq a slot list holds, checked; -1 with an exception on a malformed slot */
static int slot_ok(PyObject *slot)
{
    if (!PyList_Check(slot) || PyList_GET_SIZE(slot) != 3 ||
        !PyLong_CheckExact(PyList_GET_ITEM(slot, 0)) || !PyBytes_Check(PyList_GET_ITEM(slot, 1)) ||
        !PyBytes_Check(PyList_GET_ITEM(slot, 2))) {
        PyErr_SetString(PyExc_TypeError, "router slots must be [int, bytes, bytes]");
        return -1;
    }
    return 0;
}

/* Phase 1 check of an existing slot's seq: it must stay a small int64 for the frame. */
static int slot_seq_fits(PyObject *slots, PyObject *sym, int *fits)
{
    PyObject *slot = PyDict_GetItemWithError(slots, sym);
    *fits = 1;
    if (slot == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyList_Check(slot) || PyList_GET_SIZE(slot) != 3 ||
        !PyLong_CheckExact(PyList_GET_ITEM(slot, 0))) {
        *fits = 0;
        return 0;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(slot, 0), &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v >= MAX_SEQ || v <= -MAX_SEQ)
        *fits = 0;
    return 0;
}

#define MAX_SYMS 64
/* forwarder.router.NATIVE_MAX_SPAN */
#define NATIVE_MAX_SPAN (1 << 16)

/* the raised exception as an instance (Python 3.11 has no PyErr_GetRaisedException) */
static PyObject *fetch_exception(void)
{
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    if (ev != NULL && tb != NULL)
        PyException_SetTraceback(ev, tb);
    Py_XDECREF(et);
    Py_XDECREF(tb);
    return ev;
}

typedef struct {
    PyObject *router, *raw, *now, *produce, *trace, *tprefix, *event_ts;
    PyObject *state; /* the router's _Frame (EnvelopeRouter._begin) */
    uint32_t native; /* messages encoded here */
    int positional; /* produce is confluent_kafka's own: (topic, value, key, -1, None, None, ts) */
    PyObject *handle; /* producer.native: the librdkafka bridge's handle (or None) */
    rdk_state_t *rdk; /* its state while the rd_kafka_t lives, else NULL */
    side_t side[2];
    msg_t *msgs;
    uint32_t count;
    sym_t syms[MAX_SYMS];
    int nsyms;
    PyObject **extra_syms; /* symbols beyond the table: one object per message */
    char *scratch;
    size_t scratch_cap;
    int64_t n0, n, n_t, n_q, dup_t, dup_q;
    int64_t tq_max; /* highest event time encoded here (the heartbeats' clock) */
} frame_t;

static inline PyObject *sym_of(frame_t *f, uint32_t k)
{
    int j = f->msgs[k].sym;
    return j >= 0 ? f->syms[j].str : f->extra_syms[k];
}

/* Phase 1: parse and validate the whole frame, touching no state. 1 = ours, 0 = decline,
   -1 = exception (memory). */
static int parse_frame(frame_t *f, reader *rd, const uint8_t *buf, int64_t limit)
{
    for (uint32_t k = 0; k < f->count; k++) {
        msg_t *m = &f->msgs[k];
        const uint8_t *sp;
        uint32_t sl;
        const uint8_t *at = rd->p;
        /* a map spanning more than NATIVE_MAX_SPAN bytes (no real trade or quote comes
           close) is Python's too: its envelope-size check (envelope_too_large) is then
           the router's alone, and every envelope encoded here stays far below it */
        if (!parse_msg(rd, m, limit, &sp, &sl) || rd->p - at > NATIVE_MAX_SPAN) {
            /* not one we encode: Python routes it (in order), if msgpack decodes it */
            rd->p = at;
            if (!skip_valid(rd, 1))
                return 0;
            memset(m, 0, sizeof(*m));
            m->kind = KIND_PY;
            m->sym = -1;
            m->start = at - buf;
            m->end = rd->p - buf;
            continue;
        }
        f->native++;
        m->start = at - buf;
        m->end = rd->p - buf;
        int j;
        for (j = 0; j < f->nsyms; j++)
            if (f->syms[j].len == sl && memcmp(f->syms[j].p, sp, sl) == 0)
                break;
        if (j == f->nsyms) {
            PyObject *s = PyUnicode_DecodeUTF8((const char *)sp, sl, NULL);
            if (s == NULL)
                return -1;
            if (f->nsyms < MAX_SYMS) {
                f->syms[j].p = sp;
                f->syms[j].len = sl;
                f->syms[j].str = s;
                f->nsyms++;
            } else {
                if (f->extra_syms == NULL) {
                    f->extra_syms = PyMem_Calloc(f->count, sizeof(PyObject *));
                    if (f->extra_syms == NULL) {
                        Py_DECREF(s);
                        PyErr_NoMemory();
                        return -1;
                    }
                }
                f->extra_syms[k] = s;
                j = -1;
            }
        }
        m->sym = j;
    }
    /* trailing bytes: msgpack.ExtraData in Python; nothing to encode: plain route() */
    return rd->p == rd->end && f->native > 0;
}

/* Bind what route() binds per frame and check that seqs and trace ids stay far inside
   int64. 1 = go, 0 = decline, -1 = exception. */
static int bind_frame(frame_t *f, int64_t ingest_ns)
{
    char ingest[10];
    Py_ssize_t ingest_len = put_long(ingest, ingest_ns) - ingest;
    if (side_load(&f->side[0], f->router, k_t, ingest, ingest_len) < 0 ||
        side_load(&f->side[1], f->router, k_q, ingest, ingest_len) < 0)
        return -1;
    PyObject *producer = PyObject_GetAttr(f->router, n_producer);
    if (producer == NULL)
        return -1;
    f->produce = PyObject_GetAttr(producer, n_raw_produce);
    if (f->produce != NULL) {
        f->handle = PyObject_GetAttr(producer, n_native);
        if (f->handle == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            f->handle = Py_NewRef(Py_None);
        }
    }
    Py_DECREF(producer);
    if (f->produce == NULL || f->handle == NULL)
        return -1;
    f->rdk = rdk_from_handle(f->handle);
    for (int j = 0; j < 2 && f->rdk != NULL; j++) {
        side_t *s = &f->side[j];
        if ((s->topic_c = PyUnicode_AsUTF8(s->topic)) == NULL)
            return -1;
        s->rkt = rdk_topic(f->rdk, s->topic_c);
    }
    /* librdkafka's produce parses keywords by looking each one up by name (a str built per
       lookup): positionally, partition -1 (RD_KAFKA_PARTITION_UA) and no per-message
       callback (None: the producer's on_delivery) mean exactly the keyword call. */
    if (cfg_producer_type != NULL && PyCFunction_Check(f->produce)) {
        PyObject *owner = PyCFunction_GET_SELF(f->produce);
        PyMethodDef *def = ((PyCFunctionObject *)f->produce)->m_ml;
        f->positional = owner != NULL && PyObject_TypeCheck(owner, (PyTypeObject *)cfg_producer_type) &&
                        def != NULL && strcmp(def->ml_name, "produce") == 0;
    }
    if ((f->trace = PyObject_GetAttr(f->router, n_trace_ids)) == NULL ||
        get_i64(f->trace, n_n, &f->n0) < 0 ||
        (f->tprefix = PyObject_GetAttr(f->trace, n_prefix)) == NULL)
        return -1;
    if (!PyBytes_Check(f->tprefix)) {
        PyErr_SetString(PyExc_TypeError, "trace id prefix must be bytes");
        return -1;
    }
    PyObject *seqs = PyObject_GetAttr(f->router, n_seqs);
    int64_t floor = 0, issued = 0;
    int bad = seqs == NULL || get_i64(seqs, n_floor, &floor) < 0 ||
              get_i64(seqs, n_issued, &issued) < 0;
    Py_XDECREF(seqs);
    if (bad)
        return -1;
    int fits = f->n0 >= 0 && f->n0 < MAX_SEQ && floor > -MAX_SEQ && floor < MAX_SEQ &&
               issued > -MAX_SEQ && issued < MAX_SEQ &&
               floor + issued < MAX_SEQ - (int64_t)f->count && floor + issued > -MAX_SEQ;
    for (uint32_t k = 0; fits && k < f->count; k++) {
        msg_t *m = &f->msgs[k];
        if (m->kind == KIND_PY)
            continue;
        if (m->sym >= 0 && k > 0 && f->msgs[k - 1].sym == m->sym && f->msgs[k - 1].kind == m->kind)
            continue;
        if (slot_seq_fits(f->side[m->kind].slots, sym_of(f, k), &fits) < 0)
            return -1;
    }
    if (!fits)
        return 0;
    /* route()'s frame state (no side effects until routing starts) */
    PyObject *ingest_obj = PyLong_FromLongLong(ingest_ns);
    if (ingest_obj == NULL)
        return -1;
    f->state = PyObject_CallMethodObjArgs(f->router, n_begin, ingest_obj, f->now, NULL);
    Py_DECREF(ingest_obj);
    if (f->state == NULL || get_i64(f->state, n_n0, &f->n0) < 0 ||
        (f->event_ts = PyObject_GetAttr(f->state, n_event_ts)) == NULL)
        return -1;
    if (!PyList_Check(f->event_ts)) {
        PyErr_SetString(PyExc_TypeError, "_Frame.event_ts must be a list");
        return -1;
    }
    return 1;
}

/* Messages [k, end) are Python's: EnvelopeRouter._route_spans(raw, spans, state), with the
   frame's trace counter handed over and back. 0, or -1 when an exception escaped. */
static int route_py(frame_t *f, uint32_t k, uint32_t end)
{
    PyObject *spans = PyTuple_New(end - k), *v = NULL, *r = NULL;
    int rc = -1;
    if (spans == NULL)
        return -1;
    for (uint32_t j = k; j < end; j++) {
        PyObject *span = Py_BuildValue("(nn)", f->msgs[j].start, f->msgs[j].end);
        if (span == NULL)
            goto out;
        PyTuple_SET_ITEM(spans, j - k, span);
    }
    if ((v = PyLong_FromLongLong(f->n)) == NULL || PyObject_SetAttr(f->state, n_fn, v) < 0)
        goto out;
    r = PyObject_CallMethodObjArgs(f->router, n_route_spans, f->raw, spans, f->state, NULL);
    /* _route writes its counter back also when something escapes */
    {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        int64_t n;
        if (get_i64(f->state, n_fn, &n) == 0)
            f->n = n;
        else
            PyErr_Clear();
        PyErr_Restore(et, ev, tb);
    }
    if (r != NULL)
        rc = 0;
out:
    Py_DECREF(spans);
    Py_XDECREF(v);
    Py_XDECREF(r);
    return rc;
}

/* The Avro envelope of message m (seq, trace id n) into f->scratch; returns its length. */
static Py_ssize_t encode(frame_t *f, msg_t *m, PyObject *slot, int64_t seq)
{
    side_t *sd = &f->side[m->kind];
    PyObject *prefix = PyList_GET_ITEM(slot, 1);
    Py_ssize_t plen = PyBytes_GET_SIZE(prefix);
    Py_ssize_t tp_len = PyBytes_GET_SIZE(f->tprefix);
    size_t need = (size_t)PyBytes_GET_SIZE(sd->head) + 10 + (size_t)plen + 10 + 1 + 10 +
                  (10 + (size_t)m->x_len) + 16 + (10 + (size_t)m->ax_len) + 16 +
                  (10 + m->c_bytes + 1) + (10 + (size_t)m->z_len) + (size_t)cfg_trailer_len + 10 +
                  (size_t)tp_len + 17 + (size_t)cfg_tail_len;
    if (need > f->scratch_cap) {
        char *nb = PyMem_Realloc(f->scratch, need * 2);
        if (nb == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        f->scratch = nb;
        f->scratch_cap = need * 2;
    }
    char *o = f->scratch;
    o = put_bytes(o, PyBytes_AS_STRING(sd->head), PyBytes_GET_SIZE(sd->head));
    o = put_long(o, m->t);
    o = put_bytes(o, PyBytes_AS_STRING(prefix), plen);
    o = put_long(o, seq);
    if (m->kind == 0) {
        o = put_long(o, cfg_trade_branch); /* payload union: Trade */
        o = put_long(o, m->i);
        o = put_string(o, m->x, m->x_len);
        o = put_double(o, m->d[0]);
        o = put_double(o, m->d[1]);
    } else {
        o = put_long(o, cfg_quote_branch); /* payload union: Quote */
        o = put_string(o, m->x, m->x_len);
        o = put_double(o, m->d[0]);
        o = put_double(o, m->d[1]);
        o = put_string(o, m->ax, m->ax_len);
        o = put_double(o, m->d[2]);
        o = put_double(o, m->d[3]);
    }
    if (m->c_n) {
        reader cr = {m->c, (const uint8_t *)PyBytes_AS_STRING(f->raw) + PyBytes_GET_SIZE(f->raw)};
        o = put_long(o, m->c_n);
        for (uint32_t j = 0; j < m->c_n; j++) {
            mpobj e;
            if (!next(&cr, &e) || e.type != MP_STR) { /* validated in phase 1 */
                PyErr_SetString(PyExc_SystemError, "conditions changed under the router");
                return -1;
            }
            o = put_string(o, e.ptr, e.len);
        }
    }
    *o++ = 0x00; /* end of the conditions array (or the empty array) */
    o = put_string(o, m->z, m->z_len);
    o = put_bytes(o, cfg_trailer, cfg_trailer_len);
    char hex[17];
    int hl = 0;
    uint64_t v = (uint64_t)f->n;
    char rev[17];
    do {
        rev[hl++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    for (int j = 0; j < hl; j++)
        hex[j] = rev[hl - 1 - j];
    o = put_long(o, tp_len + hl);
    o = put_bytes(o, PyBytes_AS_STRING(f->tprefix), tp_len);
    o = put_bytes(o, hex, hl);
    o = put_bytes(o, cfg_tail, cfg_tail_len);
    return o - f->scratch;
}

/* Phase 2 for message k: route()'s loop body. 0 = next message, -1 = exception escapes. */
static int route_one(frame_t *f, uint32_t k)
{
    msg_t *m = &f->msgs[k];
    side_t *sd = &f->side[m->kind];
    PyObject *sym = sym_of(f, k);
    PyObject *slot = NULL, *t_obj = NULL, *dk = NULL, *ts_ms = NULL, *value = NULL, *tmp;
    int rc = -1;
    slot = PyDict_GetItemWithError(sd->slots, sym);
    if (slot != NULL) {
        Py_INCREF(slot);
    } else {
        if (PyErr_Occurred())
            goto out;
        PyObject *in_frame = PyLong_FromLongLong(f->n - f->n0);
        if (in_frame == NULL)
            goto out;
        slot = PyObject_CallMethodObjArgs(f->router, n_slot, m->kind ? k_q : k_t, sym, in_frame,
                                          NULL);
        Py_DECREF(in_frame);
        if (slot == NULL)
            goto rejected;
    }
    if (slot_ok(slot) < 0)
        goto out;
    if ((t_obj = PyLong_FromLongLong(m->t)) == NULL || (dk = PyTuple_New(2)) == NULL)
        goto out;
    Py_INCREF(sym);
    PyTuple_SET_ITEM(dk, 0, sym);
    if (m->kind == 0) {
        PyObject *i_obj = PyLong_FromLongLong(m->i);
        if (i_obj == NULL)
            goto out;
        PyTuple_SET_ITEM(dk, 1, i_obj);
    } else {
        Py_INCREF(t_obj);
        PyTuple_SET_ITEM(dk, 1, t_obj);
    }
    PyObject_GC_UnTrack(dk); /* a str and an int: no cycles (what the GC would conclude) */
    /* "in keys" then "keys.add": one hash lookup (adding a present key changes nothing) */
    Py_ssize_t before = PySet_GET_SIZE(sd->seen);
    if (PySet_Add(sd->seen, dk) < 0)
        goto out;
    if (PySet_GET_SIZE(sd->seen) == before) {
        if (m->kind == 0)
            f->dup_t++;
        else
            f->dup_q++;
        rc = 0;
        goto out;
    }
    if ((tmp = PyObject_CallOneArg(sd->keep, dk)) == NULL)
        goto out;
    Py_DECREF(tmp);
    int64_t seq = PyLong_AsLongLong(PyList_GET_ITEM(slot, 0));
    if (seq == -1 && PyErr_Occurred())
        goto out;
    if (seq >= MAX_SEQ || seq <= -MAX_SEQ) {
        PyErr_SetString(PyExc_OverflowError, "seq out of range");
        goto out;
    }
    PyObject *next_seq = PyLong_FromLongLong(seq + 1);
    if (next_seq == NULL)
        goto out;
    PyObject *old = PyList_GET_ITEM(slot, 0);
    PyList_SET_ITEM(slot, 0, next_seq);
    Py_DECREF(old);
    f->n += 1;
    Py_ssize_t len = encode(f, m, slot, seq);
    if (len < 0)
        goto out;
    PyObject *key = PyList_GET_ITEM(slot, 2);
    if (f->rdk != NULL && PyBytes_Check(key)) {
        /* straight to librdkafka (copied); any refusal takes the Python call below, which
           raises what confluent_kafka raises (BufferError: queue full) */
        if (rdk_produce(f->rdk, sd->topic_c, sd->rkt, f->scratch, (size_t)len,
                        PyBytes_AS_STRING(key), (size_t)PyBytes_GET_SIZE(key),
                        m->t / 1000000) == 0)
            goto produced;
    }
    if ((value = PyBytes_FromStringAndSize(f->scratch, len)) == NULL ||
        (ts_ms = PyLong_FromLongLong(m->t / 1000000)) == NULL)
        goto out;
    if (f->positional) {
        PyObject *argv[7] = {sd->topic, value, key, minus_one, Py_None, Py_None, ts_ms};
        tmp = PyObject_Vectorcall(f->produce, argv, 7, NULL);
    } else {
        PyObject *argv[4] = {sd->topic, value, key, ts_ms};
        tmp = PyObject_Vectorcall(f->produce, argv, 3, kwnames_ts);
    }
    if (tmp == NULL && PyErr_ExceptionMatches(PyExc_BufferError)) {
        PyErr_Clear();
        tmp = PyObject_CallMethodObjArgs(f->router, n_blocking_produce, sd->topic, value, key,
                                         ts_ms, NULL);
    }
    if (tmp == NULL)
        goto rejected;
    Py_DECREF(tmp);
produced:
    if (PyList_Append(f->event_ts, t_obj) < 0)
        goto out;
    if (m->t > f->tq_max)
        f->tq_max = m->t;
    if (m->kind == 0)
        f->n_t++;
    else
        f->n_q++;
    rc = 0;
    goto out;
rejected:
    /* what route()'s except clauses do with it: on_reject, or it propagates */
    {
        PyObject *exc = fetch_exception();
        PyObject *r = NULL;
        if (exc != NULL) {
            PyObject *start = PyLong_FromSsize_t(m->start), *end = PyLong_FromSsize_t(m->end);
            if (start != NULL && end != NULL)
                r = PyObject_CallMethodObjArgs(f->router, n_native_reject, exc, f->raw, start,
                                               end, NULL);
            Py_XDECREF(start);
            Py_XDECREF(end);
        }
        Py_XDECREF(exc);
        if (r != NULL) {
            Py_DECREF(r);
            rc = 0;
        }
    }
out:
    Py_XDECREF(slot);
    Py_XDECREF(t_obj);
    Py_XDECREF(dk);
    Py_XDECREF(ts_ms);
    Py_XDECREF(value);
    return rc;
}

/* attribute += delta (ints) */
static int attr_add(PyObject *obj, PyObject *name, int64_t delta)
{
    if (!delta)
        return 0;
    PyObject *cur = PyObject_GetAttr(obj, name), *d = NULL, *sum = NULL;
    int rc = -1;
    if (cur != NULL && (d = PyLong_FromLongLong(delta)) != NULL &&
        (sum = PyNumber_Add(cur, d)) != NULL)
        rc = PyObject_SetAttr(obj, name, sum);
    Py_XDECREF(cur);
    Py_XDECREF(d);
    Py_XDECREF(sum);
    return rc;
}

/* route()'s finally block (EnvelopeRouter._finish) with this frame's counts added: 0, or
   -1 with its own exception set */
static int book_frame(frame_t *f)
{
    PyObject *v = PyLong_FromLongLong(f->n), *r;
    if (v == NULL)
        return -1;
    int rc = PyObject_SetAttr(f->state, n_fn, v);
    Py_DECREF(v);
    if (rc < 0 || attr_add(f->state, n_n_t, f->n_t) < 0 || attr_add(f->state, n_n_q, f->n_q) < 0 ||
        attr_add(f->state, n_dup_t, f->dup_t) < 0 || attr_add(f->state, n_dup_q, f->dup_q) < 0)
        return -1;
    /* the trades/quotes encoded here and their highest event time: _finish takes the max
       over the frame's event times only when Python produced some too */
    if (f->n_t + f->n_q) {
        if (attr_add(f->state, n_c_tq, f->n_t + f->n_q) < 0)
            return -1;
        if ((v = PyLong_FromLongLong(f->tq_max)) == NULL)
            return -1;
        rc = PyObject_SetAttr(f->state, n_tq_max, v);
        Py_DECREF(v);
        if (rc < 0)
            return -1;
    }
    if ((r = PyObject_CallMethodObjArgs(f->router, n_finish, f->state, NULL)) == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static void frame_clear(frame_t *f)
{
    for (int j = 0; j < f->nsyms; j++)
        Py_DECREF(f->syms[j].str);
    if (f->extra_syms != NULL) {
        for (uint32_t k = 0; k < f->count; k++)
            Py_XDECREF(f->extra_syms[k]);
        PyMem_Free(f->extra_syms);
    }
    side_clear(&f->side[0]);
    side_clear(&f->side[1]);
    Py_XDECREF(f->produce);
    Py_XDECREF(f->handle);
    Py_XDECREF(f->trace);
    Py_XDECREF(f->tprefix);
    Py_XDECREF(f->event_ts);
    Py_XDECREF(f->state);
    PyMem_Free(f->scratch);
    PyMem_Free(f->msgs);
}

static PyObject *route(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "route(router, raw, ingest_ns, now, max_future_ns)");
        return NULL;
    }
    if (!cfg_ready) {
        PyErr_SetString(PyExc_RuntimeError, "forwarder._fastroute.configure() was not called");
        return NULL;
    }
    PyObject *raw = args[1];
    if (!PyBytes_Check(raw) || !PyLong_CheckExact(args[2]))
        Py_RETURN_FALSE;
    int overflow;
    long long ingest_ns = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    if (ingest_ns == -1 && PyErr_Occurred())
        return NULL;
    if (overflow)
        Py_RETURN_FALSE;
    /* the router's max_future_ns (ForwarderSettings.max_future_s), per call */
    if (!PyLong_CheckExact(args[4]))
        Py_RETURN_FALSE;
    long long max_future = PyLong_AsLongLongAndOverflow(args[4], &overflow);
    if (max_future == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || max_future < 0)
        Py_RETURN_FALSE;
    /* route() clamps its fast-path limit to 2**63 - 1; event times at or above are refused */
    int64_t limit;
    if (__builtin_add_overflow((int64_t)ingest_ns, (int64_t)max_future, &limit))
        limit = INT64_MAX;

    const uint8_t *buf = (const uint8_t *)PyBytes_AS_STRING(raw);
    Py_ssize_t buflen = PyBytes_GET_SIZE(raw);
    reader rd = {buf, buf + buflen};
    mpobj top;
    if (!next(&rd, &top) || top.type != MP_ARRAY || top.len == 0)
        Py_RETURN_FALSE;
    /* a trade or quote map takes well over 16 bytes: refuse absurd counts before allocating */
    if ((size_t)top.len > (size_t)buflen / 16)
        Py_RETURN_FALSE;

    frame_t f;
    memset(&f, 0, sizeof(f));
    f.router = args[0];
    f.raw = raw;
    f.now = args[3];
    f.count = top.len;
    f.msgs = PyMem_Calloc(top.len, sizeof(msg_t));
    if (f.msgs == NULL)
        return PyErr_NoMemory();
    PyObject *result = NULL;
    int go = parse_frame(&f, &rd, buf, limit);
    if (go > 0)
        go = bind_frame(&f, ingest_ns);
    if (go == 0) {
        result = Py_False;
        Py_INCREF(result);
    } else if (go > 0) {
        f.n = f.n0;
        int failed = 0;
        for (uint32_t k = 0; k < f.count && !failed;) {
            if (f.msgs[k].kind != KIND_PY) {
                failed = route_one(&f, k) < 0;
                k++;
                continue;
            }
            uint32_t end = k + 1;
            while (end < f.count && f.msgs[end].kind == KIND_PY)
                end++;
            failed = route_py(&f, k, end) < 0;
            k = end;
        }
        /* the bookkeeping runs also when an exception escaped the loop */
        PyObject *et = NULL, *ev = NULL, *tb = NULL;
        if (failed)
            PyErr_Fetch(&et, &ev, &tb);
        if (book_frame(&f) < 0) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(tb);
        } else if (failed) {
            PyErr_Restore(et, ev, tb);
        } else {
            result = Py_True;
            Py_INCREF(result);
        }
    }
    frame_clear(&f);
    return result;
}

/* ---- configure / module --------------------------------------------------------------- */

static PyObject *configure(PyObject *self, PyObject *args)
{
    (void)self;
    Py_ssize_t nch, t_idx, q_idx, t_branch, q_branch;
    const char *trailer, *tail;
    Py_ssize_t trailer_len, tail_len;
    PyObject *producer_type = Py_None;
    if (!PyArg_ParseTuple(args, "nnnnny#y#|O", &nch, &t_idx, &q_idx, &t_branch, &q_branch,
                          &trailer, &trailer_len, &tail, &tail_len, &producer_type))
        return NULL;
    if (producer_type != Py_None && !PyType_Check(producer_type)) {
        PyErr_SetString(PyExc_TypeError, "producer_type must be a type or None");
        return NULL;
    }
    if (nch <= 0 || t_idx < 0 || t_idx >= nch || q_idx < 0 || q_idx >= nch ||
        t_branch < 0 || t_branch >= 64 || q_branch < 0 || q_branch >= 64 ||
        trailer_len > (Py_ssize_t)sizeof(cfg_trailer) || tail_len > (Py_ssize_t)sizeof(cfg_tail)) {
        PyErr_SetString(PyExc_ValueError, "bad configuration");
        return NULL;
    }
    cfg_nch = nch;
    cfg_t_idx = t_idx;
    cfg_q_idx = q_idx;
    memcpy(cfg_trailer, trailer, trailer_len);
    cfg_trailer_len = trailer_len;
    cfg_trade_branch = t_branch;
    cfg_quote_branch = q_branch;
    memcpy(cfg_tail, tail, tail_len);
    cfg_tail_len = tail_len;
    Py_XDECREF(cfg_producer_type);
    cfg_producer_type = producer_type == Py_None ? NULL : producer_type;
    Py_XINCREF(cfg_producer_type);
    cfg_ready = 1;
    Py_RETURN_NONE;
}

static PyObject *set_limits(PyObject *self, PyObject *args)
{
    (void)self;
    double pmin, pmax, smax;
    if (!PyArg_ParseTuple(args, "ddd", &pmin, &pmax, &smax))
        return NULL;
    if (!(pmin > 0.0 && pmin < pmax && pmax < Py_HUGE_VAL && smax > 0.0 && smax < Py_HUGE_VAL)) {
        PyErr_SetString(PyExc_ValueError, "limits must satisfy 0 < price_min < price_max < inf, "
                                          "0 < size_max < inf");
        return NULL;
    }
    lim_pmin = pmin;
    lim_pmax = pmax;
    lim_smax = smax;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_limits", set_limits, METH_VARARGS,
     "set_limits(price_min, price_max, size_max): the trade/quote ranges taken natively"},
    {"configure", configure, METH_VARARGS,
     "configure(n_channels, trade_index, quote_index, trade_branch, quote_branch, trailer, tail, "
     "producer_type=None)"},
    {"route", (PyCFunction)(void (*)(void))route, METH_FASTCALL,
     "route(router, raw, ingest_ns, now, max_future_ns) -> bool: True when the frame was routed "
     "natively, "
     "False (nothing done) when it must take the Python path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_fastroute",
    "Native fast path of forwarder.router.EnvelopeRouter for msgpack trade/quote frames.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastroute(void)
{
    for (size_t j = 0; j < sizeof(NAMES) / sizeof(NAMES[0]); j++)
        if ((*NAMES[j].var = PyUnicode_InternFromString(NAMES[j].name)) == NULL)
            return NULL;
    if ((minus_one = PyLong_FromLong(-1)) == NULL)
        return NULL;
    kwnames_ts = PyTuple_Pack(1, n_timestamp);
    if (kwnames_ts == NULL)
        return NULL;
    PyObject *mod = PyModule_Create(&moduledef);
    if (mod != NULL && PyModule_AddFunctions(mod, rdk_methods) < 0)
        Py_CLEAR(mod);
    return mod;
}
