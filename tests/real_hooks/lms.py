# Transcribed from github.com/frappe/lms lms/hooks.py at commit 26db10bbe0786860fd96ff168ccac5f545f5180a
# Data for tests only (bench-jobs): the scheduling hooks exactly as that file declares them; not executable app code.
# The file declares no before_job / after_job.

scheduler_events = {
	"hourly": [
		"lms.lms.doctype.lms_certificate_request.lms_certificate_request.schedule_evals"
	],
	"daily": ["lms.job.doctype.job_opportunity.job_opportunity.update_job_openings"],
}
