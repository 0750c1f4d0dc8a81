-- Read-side views (idempotent: CREATE OR REPLACE).
CREATE OR REPLACE VIEW {{database}}.ta_microbars_final AS
SELECT * FROM {{database}}.ta_microbars FINAL WHERE is_final;

CREATE OR REPLACE VIEW {{database}}.ta_signals_final AS
SELECT * FROM {{database}}.ta_signals FINAL WHERE is_final;

-- newest bar per symbol; within one bar the final row beats provisional ones
CREATE OR REPLACE VIEW {{database}}.ta_signals_latest AS
SELECT * FROM {{database}}.ta_signals FINAL
ORDER BY symbol, window_start DESC, is_final DESC
LIMIT 1 BY symbol;

-- unparseable records per derived topic (alert when it grows: docs/runbooks.md)
CREATE OR REPLACE VIEW {{database}}.ta_dead_letter_counts AS
SELECT topic, count() AS records, max(loaded_at) AS last_loaded_at
FROM {{database}}.ta_dead_letters
GROUP BY topic;

-- the latest check of each (symbol, minute) (docs/design.md, "The minute check")
CREATE OR REPLACE VIEW {{database}}.ta_bar_checks_latest AS
SELECT * FROM {{database}}.ta_bar_checks FINAL;
