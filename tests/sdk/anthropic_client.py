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

TOOLS = [{"name": "get_weather", "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
PARIS = {"city": "Paris"}


def tool_round_trip(model):
    """A call asked for, streamed and not, then its result sent back."""
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    message = client.messages.create(model=model, max_tokens=100, messages=asked, tools=TOOLS)
    uses = [block for block in message.content if block.type == "tool_use"]
    check(message.stop_reason == "tool_use" and len(uses) == 1, f"{model}: {message}")
    check(uses[0].name == "get_weather" and uses[0].input == PARIS, f"{model}: {uses}")
    with client.messages.stream(model=model, max_tokens=100, messages=asked, tools=TOOLS) as stream:
        final = stream.get_final_message()
    streamed = [block for block in final.content if block.type == "tool_use"]
    check(final.stop_reason == "tool_use" and streamed[0].input == PARIS, f"{model} streamed: {final}")
    called = {"role": "assistant", "content": [{"type": "tool_use", "id": uses[0].id,
        "name": uses[0].name, "input": uses[0].input}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
        "content": "18 C and sunny"}]}
    answer = client.messages.create(model=model, max_tokens=100, messages=asked + [called, result], tools=TOOLS)
    check(answer.content[0].text == TEXT, f"{model} after the result: {answer}")


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
    tool_round_trip(other)

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
