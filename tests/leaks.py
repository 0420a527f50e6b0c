"""Credentials in every shape a config holds them (camelCase keys, vendor ``*_key`` names, webhook URLs, ``NAME=value``
env lists, header strings, URLs with credentials inside lists, known token shapes), each value marked ``LEAKnn`` so a
test finds any that reached the store: the verl config tests and the credential filter's tests plant the same ones."""

from __future__ import annotations

LEAKS: dict[str, object] = {
    "accessToken": "LEAK01",
    "hfToken": "LEAK02",
    "wandb_key": "LEAK03",
    "openai_key": "LEAK04",
    "passphrase": "LEAK05",
    "bearer": "LEAK06",
    "notify": "https://hooks.slack.com/services/T0/B0/LEAK07",
    "alerts_to": "https://discord.com/api/webhooks/1/LEAK08",
    "mirrors": ["https://me:LEAK09@data.internal/x.parquet"],
    "env": ["HF_TOKEN=LEAK10", "PYTHONHASHSEED=0"],
    "headers": ["Authorization: Bearer LEAK11"],
    "extra_args": "--seed 1 --api-key LEAK12",
    "model_hint": "hf_" + "a" * 30 + "LEAK13",
    "webhook_url": "https://example.org/LEAK14",
}
