# Transcribed from github.com/frappe/frappe frappe/hooks.py at commit 9e5174969de72da107b9a0709fb569effe2f73b2
# Data for tests only (bench-jobs): the scheduling hooks exactly as that file declares them; not executable app code.
# Version marker in that file: develop_version = "15.x.x-develop".

scheduler_events = {
	"cron": {
		# 5 minutes
		"0/5 * * * *": [
			"frappe.email.doctype.notification.notification.trigger_offset_alerts",
		],
		# 15 minutes
		"0/15 * * * *": [
			"frappe.email.doctype.email_account.email_account.notify_unreplied",
			"frappe.utils.global_search.sync_global_search",
			"frappe.deferred_insert.save_to_db",
			"frappe.automation.doctype.reminder.reminder.send_reminders",
			"frappe.model.utils.link_count.update_link_count",
			"frappe.search.sqlite_search.build_index_if_not_exists",
		],
		# 10 minutes
		"0/10 * * * *": [
			"frappe.email.doctype.email_account.email_account.pull",
		],
		# Hourly but offset by 30 minutes
		"30 * * * *": [],
		# Daily but offset by 45 minutes
		"45 0 * * *": [],
	},
	"all": [
		"frappe.email.queue.flush",
		"frappe.email.queue.retry_sending_emails",
		"frappe.monitor.flush",
		"frappe.integrations.doctype.google_calendar.google_calendar.sync",
	],
	"hourly": [],
	# Maintenance queue happen roughly once an hour but don't align with wall-clock time of *:00
	# Use these for when you don't care about when the job runs but just need some guarantee for
	# frequency.
	"hourly_maintenance": [
		"frappe.model.utils.user_settings.sync_user_settings",
		"frappe.desk.page.backups.backups.delete_downloadable_backups",
		"frappe.desk.form.document_follow.send_hourly_updates",
		"frappe.website.doctype.personal_data_deletion_request.personal_data_deletion_request.process_data_deletion_request",
		"frappe.core.doctype.prepared_report.prepared_report.expire_stalled_report",
		"frappe.twofactor.delete_all_barcodes_for_users",
		"frappe.oauth.delete_oauth2_data",
		"frappe.website.doctype.web_page.web_page.check_publish_status",
	],
	"daily": [
		"frappe.desk.doctype.event.event.send_event_digest",
		"frappe.email.doctype.notification.notification.trigger_daily_alerts",
		"frappe.desk.form.document_follow.send_daily_updates",
	],
	"daily_long": [],
	"daily_maintenance": [
		"frappe.email.doctype.auto_email_report.auto_email_report.send_daily",
		"frappe.desk.notifications.clear_notifications",
		"frappe.sessions.clear_expired_sessions",
		"frappe.website.doctype.personal_data_deletion_request.personal_data_deletion_request.remove_unverified_record",
		"frappe.automation.doctype.auto_repeat.auto_repeat.make_auto_repeat_entry",
		"frappe.core.doctype.log_settings.log_settings.run_log_clean_up",
		"frappe.core.doctype.user_invitation.user_invitation.mark_expired_invitations",
	],
	"weekly_long": [
		"frappe.desk.form.document_follow.send_weekly_updates",
		"frappe.utils.change_log.check_for_update",
		"frappe.desk.doctype.changelog_feed.changelog_feed.fetch_changelog_feed",
	],
	"monthly": [
		"frappe.email.doctype.auto_email_report.auto_email_report.send_monthly",
	],
}

# NOTE: in the real file, before_job is followed by a conditional block:
#   if os.getenv("FRAPPE_SENTRY_DSN") and (os.getenv("ENABLE_SENTRY_DB_MONITORING")
#       or os.getenv("SENTRY_TRACING_SAMPLE_RATE") or os.getenv("SENTRY_PROFILING_SAMPLE_RATE")):
#       before_request.append("frappe.utils.sentry.set_sentry_context")
#       before_job.append("frappe.utils.sentry.set_sentry_context")
# The literal below is the value when those environment variables are NOT set (the default).
# With them set, the resulting value is the same list plus "frappe.utils.sentry.set_sentry_context" appended at the end.
before_job = [
	"frappe.recorder.record",
	"frappe.monitor.start",
]

after_job = [
	"frappe.recorder.dump",
	"frappe.monitor.stop",
	"frappe.utils.file_lock.release_document_locks",
]
