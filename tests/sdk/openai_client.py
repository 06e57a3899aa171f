"""The official OpenAI SDK against the edge: plain and streamed chat,
usage on request, the model list, and errors as the SDK's own classes.
Every other model the key reaches (channels of the other providers,
translated) answers too. Run by tests/ai.rs with EDGE_URL, GATEWAY_KEY,
MODEL, MODELS (all the key reaches) and TEXT set."""

import json
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

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
PARIS = {"city": "Paris"}


def tool_round_trip(model):
    """A call asked for, streamed and not, then its result sent back."""
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    answer = client.chat.completions.create(model=model, messages=asked, tools=TOOLS)
    choice = answer.choices[0]
    call = choice.message.tool_calls[0]
    check(choice.finish_reason == "tool_calls", f"{model} finish: {answer}")
    check(call.function.name == "get_weather" and json.loads(call.function.arguments) == PARIS, f"{model}: {call}")
    chunks = list(client.chat.completions.create(model=model, messages=asked, tools=TOOLS, stream=True))
    deltas = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or []]
    names = [delta.function.name for delta in deltas if delta.function.name]
    arguments = "".join(delta.function.arguments or "" for delta in deltas)
    check(names == ["get_weather"] and json.loads(arguments) == PARIS, f"{model} streamed call: {deltas}")
    check([chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "tool_calls", f"{model}")
    called = {"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function",
        "function": {"name": call.function.name, "arguments": call.function.arguments}}]}
    result = {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}
    final = client.chat.completions.create(model=model, messages=asked + [called, result], tools=TOOLS)
    check(final.choices[0].message.content == TEXT, f"{model} after the result: {final}")


completed = client.completions.create(model=MODEL, prompt="Say hello.", max_tokens=20)
check(completed.choices[0].text == TEXT and completed.usage.completion_tokens == 5, f"completion: {completed}")
pieces = list(client.completions.create(model=MODEL, prompt="Say hello.", stream=True))
check("".join(piece.choices[0].text for piece in pieces if piece.choices) == TEXT, f"streamed: {pieces}")

if os.environ.get("EMBEDDING_MODEL"):
    embedded = client.embeddings.create(model=os.environ["EMBEDDING_MODEL"], input=["hello", "world"])
    check(len(embedded.data) == 2 and len(embedded.data[1].embedding) == 3, f"embeddings: {embedded}")
    check(embedded.usage.prompt_tokens > 0, f"embeddings usage: {embedded.usage}")

RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def responses(model, tools):
    """The Responses API: plain, streamed (the SDK's own accumulator reads
    the events), and, where the provider calls tools, a call and its result."""
    answer = client.responses.create(model=model, instructions="Be brief.", input="Say hello.")
    check(answer.output_text == TEXT and answer.usage.output_tokens == 5, f"{model} response: {answer}")
    with client.responses.stream(model=model, input="Say hello.") as stream:
        deltas = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    check(deltas == TEXT and final.output_text == TEXT, f"{model} streamed response: {final}")
    check(final.usage.input_tokens == 11, f"{model} streamed usage: {final.usage}")
    if not tools:
        return
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.responses.create(model=model, input=asked, tools=RESPONSE_TOOLS)
    calls = [item for item in called.output if item.type == "function_call"]
    check(len(calls) == 1 and json.loads(calls[0].arguments) == PARIS, f"{model} call: {called}")
    with client.responses.stream(model=model, input=asked, tools=RESPONSE_TOOLS) as stream:
        final = stream.get_final_response()
    streamed = [item for item in final.output if item.type == "function_call"]
    check(len(streamed) == 1 and json.loads(streamed[0].arguments) == PARIS, f"{model} streamed call: {final}")
    result = {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 C and sunny"}
    call = {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
        "arguments": calls[0].arguments}
    answer = client.responses.create(model=model, input=asked + [call, result], tools=RESPONSE_TOOLS)
    check(answer.output_text == TEXT, f"{model} after the result: {answer}")


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
    tool_round_trip(other)
    # OpenAI's own channel takes the Responses API natively (its mock
    # calls no tools there); the others get it translated.
    responses(other, tools=other != MODEL)

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
