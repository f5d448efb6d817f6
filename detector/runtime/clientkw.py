"""Connection settings of a Kafka client (address, security) from the pipeline's `[kafka]` table.

Every client of `detector run` (its consumer group, producers, the fleet, incidents
and checkpoint readers) and `detector tune` reading a history.
"""

from __future__ import annotations

import os
import ssl

from detector.config import Kafka


def client_kwargs(k: Kafka, bootstrap: str) -> dict:
    kw: dict = {"bootstrap_servers": bootstrap, "client_id": k.client_id, "security_protocol": k.security_protocol}
    if k.sasl_mechanism:
        kw["sasl_mechanism"] = k.sasl_mechanism
        kw["sasl_plain_username"] = k.sasl_username or os.environ.get("DETECTOR_KAFKA_SASL_USERNAME")
        kw["sasl_plain_password"] = k.sasl_password or os.environ.get("DETECTOR_KAFKA_SASL_PASSWORD")
    if k.security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=k.ssl_cafile or None)
        if k.ssl_certfile:
            ctx.load_cert_chain(k.ssl_certfile, k.ssl_keyfile or None)
        kw["ssl_context"] = ctx
    return kw
