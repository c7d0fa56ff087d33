"""The web room: dashboard and metrics; imports anything below it; nothing imports it."""
