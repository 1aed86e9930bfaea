"""Reports as other providers send them, for the tests of
:mod:`pillarbox.policy.receivedreports`: a DMARC aggregate report in the RFC 7489 Appendix C
format (as Google and Microsoft send it: no namespace), a TLS report as the RFC 8460 §4.4
example, and the messages carrying them (gzip, zip or plain)."""

from __future__ import annotations

import email.policy
import gzip
import io
import json
import zipfile
from email.message import EmailMessage


def dmarc_xml(
    domain: str = "example.org",
    *,
    org: str = "google.com",
    report_id: str = "10387712312983794876",
    begin: int = 1_780_000_000,
    rows: tuple[tuple[str, int, str, str, str], ...] = (
        ("192.0.2.25", 12, "none", "pass", "pass"),
        ("198.51.100.7", 3, "quarantine", "fail", "fail"),
    ),
) -> bytes:
    """An aggregate report; ``rows`` are (source IP, count, disposition, dkim, spf)."""
    records = "".join(
        f"""<record><row><source_ip>{ip}</source_ip><count>{count}</count>
<policy_evaluated><disposition>{disposition}</disposition><dkim>{dkim}</dkim><spf>{spf}</spf>
</policy_evaluated></row><identifiers><header_from>{domain}</header_from></identifiers>
<auth_results><dkim><domain>{domain}</domain><selector>s1</selector><result>{dkim}</result>
</dkim><spf><domain>{domain}</domain><result>{spf}</result></spf></auth_results></record>"""
        for ip, count, disposition, dkim, spf in rows
    )
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>{org}</org_name>
    <email>noreply-dmarc-support@{org}</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>{report_id}</report_id>
    <date_range><begin>{begin}</begin><end>{begin + 86399}</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p><sp>quarantine</sp>
    <pct>100</pct>
  </policy_published>
  {records}
</feedback>
""".encode()


def tls_json(domain: str = "example.org", *, report_id: str = "5065427c-23d3") -> bytes:
    """The RFC 8460 §4.4 example report, about ``domain``."""
    return json.dumps(
        {
            "organization-name": "Company-X",
            "date-range": {
                "start-datetime": "2026-04-01T00:00:00Z",
                "end-datetime": "2026-04-01T23:59:59Z",
            },
            "contact-info": "sts-reporting@company-x.example",
            "report-id": report_id,
            "policies": [
                {
                    "policy": {
                        "policy-type": "sts",
                        "policy-string": ["version: STSv1", "mode: testing"],
                        "policy-domain": domain,
                        "mx-host": ["*.mail.company-y.example"],
                    },
                    "summary": {
                        "total-successful-session-count": 5326,
                        "total-failure-session-count": 303,
                    },
                    "failure-details": [
                        {
                            "result-type": "certificate-expired",
                            "sending-mta-ip": "2001:db8:abcd:0012::1",
                            "receiving-mx-hostname": "mx1.mail.company-y.example",
                            "failed-session-count": 100,
                        },
                        {
                            "result-type": "starttls-not-supported",
                            "sending-mta-ip": "2001:db8:abcd:0013::1",
                            "receiving-mx-hostname": "mx2.mail.company-y.example",
                            "receiving-ip": "203.0.113.56",
                            "failed-session-count": 200,
                            "additional-information": "https://reports.company-x.example/",
                        },
                        {
                            "result-type": "validation-failure",
                            "sending-mta-ip": "198.51.100.62",
                            "receiving-ip": "203.0.113.58",
                            "failed-session-count": 3,
                            "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
                        },
                    ],
                }
            ],
        }
    ).encode()


def zipped(name: str, document: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, document)
    return buffer.getvalue()


def report_message(
    to: str,
    payload: bytes,
    content_type: str,
    filename: str,
    *,
    sender: str = "noreply-dmarc-support@google.com",
    single_part: bool = False,
) -> bytes:
    """A report message: a text part and ``payload`` attached, or (``single_part``) the
    payload as the whole body, as Google sends its zip reports."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"Report Domain: {to.partition('@')[2]} Submitter: reporter"
    message["Message-ID"] = f"<{abs(hash((to, filename))) % 10**12}@reporter.example>"
    maintype, _, subtype = content_type.partition("/")
    if single_part:
        message.set_content(payload, maintype=maintype, subtype=subtype, filename=filename)
    else:
        message.set_content("This is an aggregate report.\n")
        message.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=email.policy.SMTP)


def gzipped(document: bytes) -> bytes:
    return gzip.compress(document, mtime=0)
