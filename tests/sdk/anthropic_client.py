"""The official Anthropic SDK against the edge: plain and streamed
messages with usage, token counting, the model list, and errors as the
SDK's own classes. Every other model the key reaches (channels of the other
providers, translated) answers too. Run by tests/ai.rs with EDGE_URL,
GATEWAY_KEY, MODEL, MODELS (all the key reaches) and TEXT set."""

import os
import sys

import anthropic

EDGE = os.environ["EDGE_URL"]
KEY = os.environ["GATEWAY_KEY"]
MODEL = os.environ["MODEL"]
TEXT = os.environ["TEXT"]
MODELS = os.environ["MODELS"].split(",")
MESSAGES = [{"role": "user", "content": "Say hello."}]


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


client = anthropic.Anthropic(base_url=EDGE, api_key=KEY, max_retries=0)

message = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
check(message.content[0].text == TEXT, f"content: {message}")
check(message.usage.output_tokens == 5, f"usage: {message.usage}")

with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
check(text == TEXT, f"streamed text: {text!r}")
check(final.usage.output_tokens == 5, f"final usage: {final.usage}")

counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
check(counted.input_tokens > 0, f"count: {counted}")

models = [model.id for model in client.models.list()]
check(sorted(models) == sorted(MODELS), f"models: {models}")

for other in MODELS:
    message = client.messages.create(model=other, max_tokens=100, messages=MESSAGES)
    check(message.content[0].text == TEXT, f"{other}: {message}")
    check(message.usage.output_tokens == 5 and message.stop_reason == "end_turn", f"{other}: {message}")
    with client.messages.stream(model=other, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(text == TEXT, f"{other} streamed: {text!r}")
    check(final.usage.output_tokens == 5, f"{other} final usage: {final.usage}")

try:
    client.messages.create(model="no-such-model", max_tokens=10, messages=MESSAGES)
    check(False, "an unknown model must raise")
except anthropic.NotFoundError:
    pass

try:
    anthropic.Anthropic(base_url=EDGE, api_key="sk-wrong", max_retries=0).messages.create(
        model=MODEL, max_tokens=10, messages=MESSAGES
    )
    check(False, "a wrong key must raise")
except anthropic.AuthenticationError:
    pass

print("ok")
