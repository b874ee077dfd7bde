"""Sending e-mail by SMTP, as `[reports]` configures it (smtplib: STARTTLS, implicit TLS, or plain to a
local relay). Every failure is a MailError whose message says what to fix; nothing here raises anything
else, so a broken mail setup never stops the gateway."""
from __future__ import annotations

import os
import smtplib
import socket
import ssl
from collections.abc import Mapping
from email.message import EmailMessage

from gateway.config import ReportsConfig


class MailError(Exception):
    """A report could not be sent; the message says why and what to change."""


def smtp_password(config: ReportsConfig, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if not config.smtp_user:
        return ""
    password = env.get(config.smtp_password_env, "")
    if not password:
        raise MailError(f"the SMTP password is missing: set the environment variable {config.smtp_password_env} "
                        f"(named by [reports] smtp_password_env) for the gateway")
    return password


def send_message(config: ReportsConfig, message: EmailMessage, env: Mapping[str, str] | None = None,
                 tls_context: ssl.SSLContext | None = None) -> None:
    """Sends one message to its To addresses; raises MailError."""
    where = f"{config.smtp_host}:{config.smtp_port}"
    context = tls_context or ssl.create_default_context()
    try:
        password = smtp_password(config, env)
        if config.smtp_security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(config.smtp_host, config.smtp_port, timeout=config.timeout,
                                                    context=context)
        else:
            client = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.timeout)
        with client:
            if config.smtp_security == "starttls":
                client.starttls(context=context)
            if config.smtp_user:
                client.login(config.smtp_user, password)
            client.send_message(message)
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(f"the SMTP server {where} refused the login of {config.smtp_user!r} ({exc.smtp_code}): "
                        "check [reports] smtp_user and the password in the environment") from None
    except smtplib.SMTPNotSupportedError as exc:
        raise MailError(f"the SMTP server {where} does not offer {exc}: set [reports] smtp_security to what it "
                        "supports (starttls, tls on port 465, or none for a local relay)") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError(f"the SMTP server {where} refused every recipient ({', '.join(exc.recipients)}): check "
                        "report_to") from None
    except smtplib.SMTPException as exc:
        raise MailError(f"the SMTP server {where} refused the report: {str(exc)[:300]}") from None
    except ssl.SSLError as exc:
        raise MailError(f"TLS with the SMTP server {where} failed ({exc.reason or exc}): check smtp_port and "
                        "smtp_security (tls is port 465, starttls port 587)") from None
    except (socket.timeout, TimeoutError):
        raise MailError(f"the SMTP server {where} did not answer within {config.timeout:g} s: check smtp_host and "
                        "smtp_port") from None
    except OSError as exc:
        raise MailError(f"cannot reach the SMTP server {where} ({exc.strerror or exc}): check [reports] smtp_host "
                        "and smtp_port") from None
