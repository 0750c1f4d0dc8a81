"""`python -m flink_job`: the TA job's cluster entry (the FlinkDeployment's `-pym flink_job`).

Settings come from `TORGHUT_TA_*` environment variables (docs/flink-job.md); the image
provides the connector, glue and S3 plugin jars. Local runs use `torghut ta` instead.
"""

from flink_job.job import main

if __name__ == "__main__":
    main(local=False)
