"""`detector tune`: learn from your own production history (rules, patterns, delivery, thresholds)."""
