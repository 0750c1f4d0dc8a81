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
