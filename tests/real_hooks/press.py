# Transcribed from github.com/frappe/press press/hooks.py at commit 00b3acf264a2d695c44088354bb0e234208838e0
# Data for tests only (bench-jobs): the scheduling hooks exactly as that file declares them; not executable app code.
# The file declares no before_job / after_job. Its two seconds-field crons (`* * * * * 0/5`, `* * * * * 0/60`) are
# read as croniter reads them: the sixth field is seconds.

scheduler_events = {
	"daily": [
		"press.press.cleanup.remove_logs",
		"press.press.doctype.team.suspend_sites.execute",
		"press.press.doctype.tls_certificate.tls_certificate.renew_tls_certificates",
		"press.press.doctype.invoice.invoice.submit_invoices",
	],
	"hourly": ["press.press.doctype.app.app.poll_new_releases"],
	"hourly_long": [
		"press.press.doctype.bench.bench.archive_obsolete_benches",
		"press.press.doctype.bench.bench.scale_workers",
		"press.press.doctype.site.backups.schedule",
		"press.press.doctype.subscription.subscription.create_usage_records",
		"press.press.doctype.bench.bench.sync_benches",
	],
	"cron": {
		"0 3 * * *": ["press.press.doctype.remote_file.remote_file.poll_file_statuses"],
		"0 4 * * *": [
			"press.press.doctype.site.backups.cleanup",
			"press.press.cleanup.unlink_remote_files_from_site",
		],
		"* * * * * 0/5": ["press.press.doctype.agent_job.agent_job.poll_pending_jobs"],
		"* * * * * 0/60": [
			"press.press.doctype.site.analytics.collect",
			"press.press.doctype.agent_job.agent_job.collect_site_uptime",
			"press.press.doctype.agent_job.agent_job.report_site_downtime",
		],
		"0 */6 * * *": ["press.press.doctype.server.server.cleanup_unused_files"],
		"30 * * * *": ["press.press.doctype.agent_job.agent_job.suspend_sites"],
		"*/15 * * * *": ["press.press.doctype.site_update.site_update.schedule_updates"],
		"15,45 * * * *": [
			"press.press.doctype.site.site_usages.update_cpu_usages",
			"press.press.doctype.site.site_usages.update_disk_usages",
		],
	},
}
