"""`consentgate scan URL`: what a regulator's crawler finds on a site, before it does.

crawl.py drives Chromium through three phases (no consent, after Reject, after Accept);
findings.py judges what it saw; report_html.py and the JSON (model.py, schema.py) report it;
suggest.py drafts the cookie declaration; command.py is the command. See docs/scan.md.
"""
