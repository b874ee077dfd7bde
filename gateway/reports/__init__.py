"""E-mail reports: figures (analytics/report.py) rendered as a message, sent by SMTP (gateway/mailer.py),
on a schedule inside the running gateway or on request (`consentgate report send`)."""
