-- Kafka engine tables and their materialized views, re-created on every apply in their own
-- database ({{ingest_db_engine}}: Memory under embedded chdb, Atomic on a server); the
-- consumer group keeps the offsets, so re-creating them loses and repeats nothing.
-- Connection: the named collection {{kafka_collection}} (brokers, SASL_SSL, SCRAM user and
-- password, CA, endpoint identification, isolation.level=read_committed): on a server from
-- config.d (k8s/base/clickhouse/torghut-kafka.xml), so no credential is ever in this DDL;
-- see torghut/clickhouse/schema.py. The job's transactional output is only read once committed.
-- The consumer profile (shared/consumer_profile.py, TORGHUT_CONSUMER_*) picks the topic
-- versions ({{bars_topic}}, {{signals_topic}}); with `enabled` off, apply runs only the two
-- database statements: no Kafka table, no MV, nothing consumed, the groups' offsets kept.
-- The at-least-once profile adds 25_ingest_provisional.sql (read_uncommitted, provisional rows).
DROP DATABASE IF EXISTS {{ingest_db}} SYNC;

CREATE DATABASE {{ingest_db}} ENGINE = {{ingest_db_engine}};

CREATE TABLE {{ingest_db}}.ta_microbars_queue
(
    symbol      String,
    window      Tuple(size_ms Int64, step_ms Int64, start DateTime64(6, 'UTC'), end DateTime64(6, 'UTC')),
    open        Float64,
    high        Float64,
    low         Float64,
    close       Float64,
    volume      Float64,
    vwap        Float64,
    trade_count Int64,
    is_final    Bool,
    version     Int64,
    event_ts    Int64,
    ingest_ts   Int64,
    emit_ts     Int64,
    seq         Int64,
    source      String,
    trace_id    String,
    gap         Bool,
    -- Nullable: a v1/v2 record lacks the field and reads NULL (a Kafka table has no
    -- DEFAULT expressions), which the view maps to 2
    price_basis Nullable(Int32)
)
ENGINE = Kafka({{kafka_collection}})
SETTINGS kafka_topic_list = '{{bars_topic}}',
         kafka_group_name = '{{consumer_group}}-microbars',
         kafka_format = 'AvroConfluent',
         format_avro_schema_registry_url = '{{registry_url}}',
         -- records of MicroBar v1 (before `gap`) are still in the topic after an upgrade:
         -- a column their writer schema lacks takes its default (gap = false)
         input_format_avro_allow_missing_fields = 1,
         kafka_flush_interval_ms = 250,
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW {{ingest_db}}.ta_microbars_mv TO {{database}}.ta_microbars AS
SELECT
    symbol,
    window.start AS window_start,
    window.end AS window_end,
    toUInt32(window.size_ms) AS window_size_ms,
    is_final,
    open, high, low, close, volume, vwap,
    toUInt64(trade_count) AS trade_count,
    toUInt64(version) AS version,
    fromUnixTimestamp64Nano(event_ts, 'UTC') AS event_ts,
    fromUnixTimestamp64Nano(ingest_ts, 'UTC') AS ingest_ts,
    fromUnixTimestamp64Nano(emit_ts, 'UTC') AS emit_ts,
    seq, source, trace_id, gap,
    toUInt8(ifNull(price_basis, 2)) AS price_basis
FROM {{ingest_db}}.ta_microbars_queue
WHERE length(_error) = 0;

CREATE MATERIALIZED VIEW {{ingest_db}}.ta_microbars_dead_letters_mv TO {{database}}.ta_dead_letters AS
SELECT _topic AS topic, _partition AS partition, _offset AS offset, _key AS key,
    _raw_message AS raw_message, _error AS error
FROM {{ingest_db}}.ta_microbars_queue
WHERE length(_error) > 0;

CREATE TABLE {{ingest_db}}.ta_signals_queue
(
    symbol      String,
    window      Tuple(size_ms Int64, step_ms Int64, start DateTime64(6, 'UTC'), end DateTime64(6, 'UTC')),
    close       Float64,
    ema12       Nullable(Float64),
    ema26       Nullable(Float64),
    macd        Nullable(Float64),
    macd_signal Nullable(Float64),
    macd_hist   Nullable(Float64),
    rsi14       Nullable(Float64),
    boll_mid    Nullable(Float64),
    boll_upper  Nullable(Float64),
    boll_lower  Nullable(Float64),
    atr14       Nullable(Float64),
    vwap_session Nullable(Float64),
    vwap_5m     Nullable(Float64),
    realized_vol_60s Nullable(Float64),
    spread      Nullable(Float64),
    imbalance   Nullable(Float64),
    is_final    Bool,
    version     Int64,
    event_ts    Int64,
    ingest_ts   Int64,
    emit_ts     Int64,
    seq         Int64,
    source      String,
    trace_id    String,
    gap         Bool
)
ENGINE = Kafka({{kafka_collection}})
SETTINGS kafka_topic_list = '{{signals_topic}}',
         kafka_group_name = '{{consumer_group}}-signals',
         kafka_format = 'AvroConfluent',
         format_avro_schema_registry_url = '{{registry_url}}',
         -- Signal v1 records (before `gap`) read as gap = false
         input_format_avro_allow_missing_fields = 1,
         kafka_flush_interval_ms = 250,
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW {{ingest_db}}.ta_signals_mv TO {{database}}.ta_signals AS
SELECT
    symbol,
    window.start AS window_start,
    window.end AS window_end,
    toUInt32(window.size_ms) AS window_size_ms,
    is_final,
    close, ema12, ema26, macd, macd_signal, macd_hist, rsi14,
    boll_mid, boll_upper, boll_lower, atr14, vwap_session, vwap_5m, realized_vol_60s,
    spread, imbalance,
    toUInt64(version) AS version,
    fromUnixTimestamp64Nano(event_ts, 'UTC') AS event_ts,
    fromUnixTimestamp64Nano(ingest_ts, 'UTC') AS ingest_ts,
    fromUnixTimestamp64Nano(emit_ts, 'UTC') AS emit_ts,
    seq, source, trace_id, gap
FROM {{ingest_db}}.ta_signals_queue
WHERE length(_error) = 0;

CREATE MATERIALIZED VIEW {{ingest_db}}.ta_signals_dead_letters_mv TO {{database}}.ta_dead_letters AS
SELECT _topic AS topic, _partition AS partition, _offset AS offset, _key AS key,
    _raw_message AS raw_message, _error AS error
FROM {{ingest_db}}.ta_signals_queue
WHERE length(_error) > 0;

CREATE TABLE {{ingest_db}}.ta_bar_checks_queue
(
    symbol      String,
    minute      DateTime64(6, 'UTC'),
    result      String,
    disagreements Array(String),
    price_basis Nullable(Int32),
    seconds     Int32,
    gap         Bool,
    ours_open Nullable(Float64),
    theirs_open Nullable(Float64),
    open_agrees Nullable(Bool),
    ours_high Nullable(Float64),
    theirs_high Nullable(Float64),
    high_agrees Nullable(Bool),
    ours_low Nullable(Float64),
    theirs_low Nullable(Float64),
    low_agrees Nullable(Bool),
    ours_close Nullable(Float64),
    theirs_close Nullable(Float64),
    close_agrees Nullable(Bool),
    ours_volume Nullable(Float64),
    theirs_volume Nullable(Float64),
    volume_agrees Nullable(Bool),
    ours_trade_count Nullable(Int64),
    theirs_trade_count Nullable(Int64),
    trade_count_agrees Nullable(Bool),
    ours_vwap Nullable(Float64),
    theirs_vwap Nullable(Float64),
    vwap_agrees Nullable(Bool),
    revision    Int32,
    check_ts    Int64,
    source      String
)
ENGINE = Kafka({{kafka_collection}})
SETTINGS kafka_topic_list = 'ta.bar-checks.v1',
         kafka_group_name = '{{consumer_group}}-bar-checks',
         kafka_format = 'AvroConfluent',
         format_avro_schema_registry_url = '{{registry_url}}',
         kafka_flush_interval_ms = 250,
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW {{ingest_db}}.ta_bar_checks_mv TO {{database}}.ta_bar_checks AS
SELECT
    symbol, minute, result, disagreements,
    price_basis,
    toUInt16(seconds) AS seconds,
    gap,
    ours_open,
    theirs_open,
    open_agrees,
    ours_high,
    theirs_high,
    high_agrees,
    ours_low,
    theirs_low,
    low_agrees,
    ours_close,
    theirs_close,
    close_agrees,
    ours_volume,
    theirs_volume,
    volume_agrees,
    ours_trade_count,
    theirs_trade_count,
    trade_count_agrees,
    ours_vwap,
    theirs_vwap,
    vwap_agrees,
    toUInt32(revision) AS revision,
    fromUnixTimestamp64Nano(check_ts, 'UTC') AS check_ts,
    toUInt64(check_ts) AS version,
    source
FROM {{ingest_db}}.ta_bar_checks_queue
WHERE length(_error) = 0;

CREATE MATERIALIZED VIEW {{ingest_db}}.ta_bar_checks_dead_letters_mv TO {{database}}.ta_dead_letters AS
SELECT _topic AS topic, _partition AS partition, _offset AS offset, _key AS key,
    _raw_message AS raw_message, _error AS error
FROM {{ingest_db}}.ta_bar_checks_queue
WHERE length(_error) > 0;
