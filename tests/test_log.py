"""Logging: JSON off a TTY, and a planted secret never appears in any line."""

from __future__ import annotations

import io
import json
import logging

from daemon import log


def test_secret_never_logged() -> None:
    planted = "tok-PLANTED-9f8e7d6c5b4a"
    buf = io.StringIO()
    log.setup("debug", "json", stream=buf)
    log.register_secret(planted)
    logger = log.get("test")
    logger.info("plain", detail=f"url=https://api.telegram.org/bot{planted}/getUpdates")
    logger.info("nested", data={"headers": {"auth": f"Bearer {planted}"}}, items=[planted])
    logger.info("by_key", bot_token="other-value-123", api_key_env="SIGD_API_KEY")
    try:
        raise RuntimeError(f"request to /bot{planted}/sendMessage failed")
    except RuntimeError:
        logger.exception("failed")
    logging.getLogger("ccxt.base").warning("stdlib line with %s", planted)
    text = buf.getvalue()
    assert planted not in text
    assert "other-value-123" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {line["event"] for line in lines} >= {"plain", "nested", "by_key", "failed"}
    by_key = next(line for line in lines if line["event"] == "by_key")
    assert by_key["api_key_env"] == "SIGD_API_KEY"  # a variable name is not a secret
    assert any("***" in json.dumps(line) for line in lines)


def test_a_named_tuple_value_is_logged_not_raised() -> None:
    from collections import namedtuple

    buf = io.StringIO()
    log.setup("debug", "json", stream=buf)
    log.register_secret("tok-PLANTED-named-tuple")
    span = namedtuple("Span", "start end")(1, "tok-PLANTED-named-tuple")
    log.get("test").info("span", span=span, pair=(1, 2))
    [line] = [json.loads(x) for x in buf.getvalue().splitlines() if x.strip()]
    assert line["span"] == [1, "***"] and line["pair"] == [1, 2]
