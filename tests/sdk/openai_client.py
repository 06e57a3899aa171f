"""The official OpenAI SDK against the edge: plain and streamed chat,
usage on request, the model list, and errors as the SDK's own classes.
Every other model the key reaches (channels of the other providers,
translated) answers too. Run by tests/ai.rs with EDGE_URL, GATEWAY_KEY,
MODEL, MODELS (all the key reaches) and TEXT set."""

import os
import sys

import openai

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


client = openai.OpenAI(base_url=f"{EDGE}/v1", api_key=KEY, max_retries=0)

answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
check(answer.choices[0].message.content == TEXT, f"content: {answer}")
check(answer.usage.prompt_tokens == 11 and answer.usage.completion_tokens == 5, f"usage: {answer.usage}")

chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
check(text == TEXT, f"streamed text: {text!r}")
check(all(chunk.usage is None for chunk in chunks), "no usage chunk unless asked")

chunks = list(
    client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
)
usages = [chunk.usage for chunk in chunks if chunk.usage is not None]
check(len(usages) == 1 and usages[0].prompt_tokens == 11, f"usage chunk: {usages}")

models = [model.id for model in client.models.list()]
check(sorted(models) == sorted(MODELS), f"models: {models}")

for other in MODELS:
    answer = client.chat.completions.create(model=other, messages=MESSAGES)
    check(answer.choices[0].message.content == TEXT, f"{other}: {answer}")
    check(answer.usage.completion_tokens == 5, f"{other}: {answer}")
    chunks = list(client.chat.completions.create(model=other, messages=MESSAGES, stream=True))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    check(text == TEXT, f"{other} streamed: {text!r}")
    check(chunks[-1].choices[0].finish_reason == "stop", f"{other} finish: {chunks[-1]}")

try:
    client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    check(False, "an unknown model must raise")
except openai.NotFoundError as error:
    check(error.code == "model_not_found", f"code: {error.code}")

try:
    openai.OpenAI(base_url=f"{EDGE}/v1", api_key="sk-wrong", max_retries=0).chat.completions.create(
        model=MODEL, messages=MESSAGES
    )
    check(False, "a wrong key must raise")
except openai.AuthenticationError:
    pass

try:
    client.chat.completions.create(model=MODEL, messages=[])
    check(False, "an empty conversation must raise")
except openai.BadRequestError:
    pass

print("ok")
