scheduler_events = {
    "all": ["sample_app.tasks.every_tick"],
    "hourly": ["sample_app.tasks.hourly"],
    "daily": ["sample_app.tasks.daily"],
    "weekly": ["sample_app.tasks.weekly"],
    "monthly": ["sample_app.tasks.monthly"],
    "yearly": ["sample_app.tasks.yearly"],
    "daily_long": [{"method": "sample_app.tasks.daily_long", "timeout": 2000}],
    "cron": {
        "*/15 * * * *": ["sample_app.tasks.quarter_hourly"],
        "30 2 * * *": [{"method": "sample_app.tasks.at_half_past_two", "queue": "short"}],
    },
}

before_job = ["sample_app.tasks.before"]
after_job = ["sample_app.tasks.after"]

doc_types = {"Invoice": "sample_app.tasks.Invoice"}
