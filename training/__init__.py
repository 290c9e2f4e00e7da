"""Training and evaluating taggers from Label Studio exports."""
