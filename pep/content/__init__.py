"""Content inspection: findings for input.content and masking for the redact obligation.

    inspector = ContentInspector(settings.content)      # once per process
    scan = inspector.scan(message_texts)                # normalised texts + findings
    text, n = inspector.redact(text, {"email"})         # masks, normalised form
    msgs, n = inspector.redact_messages(messages, {"email", "phone"})
    out = inspector.output_scanner(check_every_chars)   # per request, model answers

See docs/content-inspection.md for types, rules, normalisation and the mask format.
"""

from pep.content.detectors import FINDING_TYPES
from pep.content.inspector import ContentInspector, ContentScan
from pep.content.output import OutputScanner
from pep.content.settings import ContentSettings

__all__ = ["FINDING_TYPES", "ContentInspector", "ContentScan", "ContentSettings", "OutputScanner"]
