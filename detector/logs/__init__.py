"""Log intelligence: template mining, per-window template counts, novelty and error shifts.

Modules, each owning one thing:

- `masking`: variable parts of a message -> typed placeholders (`<NUM>`, `<IP>`, ...);
- `miner`: template mining per service (a Drain-like tree where a differing
  word splits an event until it is seen in enough forms) behind a
  masked-message memo, with hard caps on templates and on the work per line;
- `registry`: per-template metadata and the stable public template id
  (hash of service and masked template text);
- `kinds`: what a template is evidence of (config, connection, data, exception, other);
- `counts`: per-window counts by (template, version, level) and their history;
- `findings`: `log_novelty` and `log_errors` for a deploy, with shared-infrastructure
  scoping, and `root_cause_hint` (the category the log evidence suggests);
- `templates`: `LogTemplates`, the facade the core calls, and its snapshot format;
- `settings`: `LogSettings`;
- `report`: `detector templates`, the templates of a JSONL input as CSV.
"""

from detector.logs.findings import DeployContext, TemplateFinding, root_cause_hint
from detector.logs.kinds import KIND_CATEGORY, KINDS, classify
from detector.logs.masking import mask, mask_tokens
from detector.logs.registry import TemplateInfo, template_id
from detector.logs.settings import LogSettings
from detector.logs.templates import LogTemplates, TemplateCount, WindowTemplateCounts

__all__ = [
    "KINDS",
    "KIND_CATEGORY",
    "DeployContext",
    "LogSettings",
    "LogTemplates",
    "TemplateCount",
    "TemplateFinding",
    "TemplateInfo",
    "WindowTemplateCounts",
    "classify",
    "mask",
    "mask_tokens",
    "root_cause_hint",
    "template_id",
]
