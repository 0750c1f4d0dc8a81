-- Storage tables: idempotent (IF NOT EXISTS). ReplacingMergeTree(version) absorbs replays
-- and duplicates; provisional (is_final = 0) and final rows are separate keys, so both
-- stay queryable and the final row of a bar is never replaced by a late provisional one.
CREATE DATABASE IF NOT EXISTS {{database}};

CREATE TABLE IF NOT EXISTS {{database}}.ta_microbars
(
    symbol       LowCardinality(String),
    window_start DateTime64(6, 'UTC'),
    window_end   DateTime64(6, 'UTC'),
    window_size_ms UInt32,
    is_final     Bool,
    open         Float64,
    high         Float64,
    low          Float64,
    close        Float64,
    volume       Float64,
    vwap         Float64,
    trade_count  UInt64,
    version      UInt64,
    event_ts     DateTime64(9, 'UTC'),
    ingest_ts    DateTime64(9, 'UTC'),
    emit_ts      DateTime64(9, 'UTC'),
    seq          Int64,
    source       LowCardinality(String),
    trace_id     String,
    loaded_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    gap          Bool DEFAULT false,
    price_basis  UInt8 DEFAULT 2
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(window_start)
ORDER BY (symbol, window_start, window_size_ms, is_final)
TTL toDateTime(window_start) + INTERVAL 30 DAY;

-- microbar schema v2 (gap flags, docs/topics-and-schemas.md): a table created before it gains
-- the column; rows loaded before read false
ALTER TABLE {{database}}.ta_microbars ADD COLUMN IF NOT EXISTS gap Bool DEFAULT false;
-- microbar schema v3 (sale-condition price basis, docs/design.md "Condition-aware bars"):
-- rows loaded before read 2 (every trade was taken as a regular sale)
ALTER TABLE {{database}}.ta_microbars ADD COLUMN IF NOT EXISTS price_basis UInt8 DEFAULT 2;

CREATE TABLE IF NOT EXISTS {{database}}.ta_signals
(
    symbol       LowCardinality(String),
    window_start DateTime64(6, 'UTC'),
    window_end   DateTime64(6, 'UTC'),
    window_size_ms UInt32,
    is_final     Bool,
    close        Float64,
    ema12        Nullable(Float64),
    ema26        Nullable(Float64),
    macd         Nullable(Float64),
    macd_signal  Nullable(Float64),
    macd_hist    Nullable(Float64),
    rsi14        Nullable(Float64),
    boll_mid     Nullable(Float64),
    boll_upper   Nullable(Float64),
    boll_lower   Nullable(Float64),
    atr14        Nullable(Float64),
    vwap_session Nullable(Float64),
    vwap_5m      Nullable(Float64),
    realized_vol_60s Nullable(Float64),
    spread       Nullable(Float64),
    imbalance    Nullable(Float64),
    version      UInt64,
    event_ts     DateTime64(9, 'UTC'),
    ingest_ts    DateTime64(9, 'UTC'),
    emit_ts      DateTime64(9, 'UTC'),
    seq          Int64,
    source       LowCardinality(String),
    trace_id     String,
    loaded_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    gap          Bool DEFAULT false
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(window_start)
ORDER BY (symbol, window_start, window_size_ms, is_final)
TTL toDateTime(window_start) + INTERVAL 14 DAY;

-- signal schema v2 (gap flags): a table created before it gains the column
ALTER TABLE {{database}}.ta_signals ADD COLUMN IF NOT EXISTS gap Bool DEFAULT false;

-- The minute check (`torghut check-bars`, docs/design.md "The minute check"): one row per
-- (symbol, minute) and check; a re-check (an updatedBar) has a larger check_ts and replaces it.
CREATE TABLE IF NOT EXISTS {{database}}.ta_bar_checks
(
    symbol       LowCardinality(String),
    minute       DateTime64(6, 'UTC'),
    result       LowCardinality(String),
    disagreements Array(String),
    price_basis  Nullable(Int32),
    seconds      UInt16,
    gap          Bool,
    ours_open        Nullable(Float64),
    theirs_open      Nullable(Float64),
    open_agrees      Nullable(Bool),
    ours_high        Nullable(Float64),
    theirs_high      Nullable(Float64),
    high_agrees      Nullable(Bool),
    ours_low         Nullable(Float64),
    theirs_low       Nullable(Float64),
    low_agrees       Nullable(Bool),
    ours_close       Nullable(Float64),
    theirs_close     Nullable(Float64),
    close_agrees     Nullable(Bool),
    ours_volume      Nullable(Float64),
    theirs_volume    Nullable(Float64),
    volume_agrees    Nullable(Bool),
    ours_trade_count Nullable(Int64),
    theirs_trade_count Nullable(Int64),
    trade_count_agrees Nullable(Bool),
    ours_vwap        Nullable(Float64),
    theirs_vwap      Nullable(Float64),
    vwap_agrees      Nullable(Bool),
    revision     UInt32,
    check_ts     DateTime64(9, 'UTC'),
    version      UInt64,
    source       LowCardinality(String),
    loaded_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(minute)
ORDER BY (symbol, minute)
TTL toDateTime(minute) + INTERVAL 30 DAY;

-- Dead letters: records of the derived topics that the Kafka engine tables could not parse
-- (kafka_handle_error_mode = 'stream'), kept with where they came from and the parse error
-- instead of vanishing; counted per topic in ta_dead_letter_counts (30_views.sql).
CREATE TABLE IF NOT EXISTS {{database}}.ta_dead_letters
(
    topic        LowCardinality(String),
    partition    UInt64,
    offset       UInt64,
    key          String,
    raw_message  String,
    error        String,
    loaded_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (topic, partition, offset)
TTL toDateTime(loaded_at) + INTERVAL 30 DAY;
