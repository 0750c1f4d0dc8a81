-- The at-least-once consumer profile's provisional path (shared/consumer_profile.py): only
-- run when TORGHUT_CONSUMER_PROFILE=at-least-once and ingestion is enabled. These Kafka tables
-- read the same topics through the named collection {{kafka_collection_uncommitted}}
-- (isolation.level=read_uncommitted), in consumer groups of their own, and their views load
-- only provisional rows (is_final = false): a provisional bar or signal is in the tables as
-- soon as the job writes it, before its transaction commits. Final rows keep coming through
-- the read_committed tables of 20_ingest.sql only, so a final record of a transaction that is
-- later aborted never reaches the tables and the final views stay exact; an aborted
-- provisional record may stay as a provisional row (is_final = false) until a newer version of
-- that bar replaces it. Every provisional row also arrives again through the committed path
-- (same key and version): ReplacingMergeTree(version) collapses the two under FINAL.
-- Records that do not parse are skipped here (the committed path keeps them as dead letters).

CREATE TABLE {{ingest_db}}.ta_microbars_provisional_queue
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
ENGINE = Kafka({{kafka_collection_uncommitted}})
SETTINGS kafka_topic_list = '{{bars_topic}}',
         kafka_group_name = '{{consumer_group}}-microbars-provisional',
         kafka_format = 'AvroConfluent',
         format_avro_schema_registry_url = '{{registry_url}}',
         input_format_avro_allow_missing_fields = 1,
         kafka_flush_interval_ms = 250,
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW {{ingest_db}}.ta_microbars_provisional_mv TO {{database}}.ta_microbars AS
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
FROM {{ingest_db}}.ta_microbars_provisional_queue
WHERE length(_error) = 0 AND NOT is_final;

CREATE TABLE {{ingest_db}}.ta_signals_provisional_queue
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
ENGINE = Kafka({{kafka_collection_uncommitted}})
SETTINGS kafka_topic_list = '{{signals_topic}}',
         kafka_group_name = '{{consumer_group}}-signals-provisional',
         kafka_format = 'AvroConfluent',
         format_avro_schema_registry_url = '{{registry_url}}',
         input_format_avro_allow_missing_fields = 1,
         kafka_flush_interval_ms = 250,
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW {{ingest_db}}.ta_signals_provisional_mv TO {{database}}.ta_signals AS
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
FROM {{ingest_db}}.ta_signals_provisional_queue
WHERE length(_error) = 0 AND NOT is_final;
