# Transcribed from github.com/frappe/payments payments/hooks.py at commit 0c09eb01480e01df6846e2f01b02a87a4067f002
# Data for tests only (bench-jobs): the scheduling hooks exactly as that file declares them; not executable app code.
# The file declares no before_job / after_job.

scheduler_events = {
	"all": [
		"payments.payment_gateways.doctype.razorpay_settings.razorpay_settings.capture_payment",
	],
}
