# Transcribed from github.com/frappe/helpdesk helpdesk/hooks.py at commit 0055e47268b4a1ca3eafd519453206174d71eb6f
# Data for tests only (bench-jobs): the scheduling hooks exactly as that file declares them; not executable app code.
# The file declares no before_job / after_job.

scheduler_events = {
    "all": [
        "helpdesk.search.build_index_if_not_exists",
        "helpdesk.search.download_corpus",
    ],
    "daily": [
        "helpdesk.helpdesk.doctype.hd_ticket.hd_ticket.close_tickets_after_n_days"
    ],
    "hourly_long": [
        "helpdesk.helpdesk.doctype.hd_ticket.hd_ticket.update_sla_status_in_ticket"
    ],
}
