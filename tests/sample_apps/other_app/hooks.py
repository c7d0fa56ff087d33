scheduler_events = {"hourly": ["other_app.tasks.only_for_beta"]}
