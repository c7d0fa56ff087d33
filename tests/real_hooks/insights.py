# Transcribed from github.com/frappe/insights insights/hooks.py at commit 03f6c8544128f244ee1e4799c1d7333149481e9f
# Data for tests only (bench-jobs): the scheduling hooks exactly as that file declares them; not executable app code.
# The file declares no before_job / after_job.

scheduler_events = {
    "all": [
        "insights.insights.doctype.insights_alert.insights_alert.send_alerts",
        "insights.api.data_store.sync_tables",
    ],
    "daily": [
        "insights.telemetry_scan.run_site_scan",
    ],
    "weekly": [
        "insights.insights.doctype.insights_data_source_v3.data_warehouse.cleanup_data_store",
    ],
    "hourly": [
        "insights.api.data_store.update_failed_sync_status",
        "insights.insights.doctype.insights_table_import_job.insights_table_import_job.run_scheduled_imports",
    ],
}
