"""The official Google GenAI SDK (Gemini) against the edge: plain and
streamed generation with usage, token counting, the model list, and errors
as the SDK's own classes. Every other model the key reaches (channels of the
other providers, translated) answers too. Run by tests/ai.rs with EDGE_URL,
GATEWAY_KEY, MODEL, MODELS (all the key reaches) and TEXT set."""

import os
import sys

from google import genai
from google.genai import errors, types

EDGE = os.environ["EDGE_URL"]
KEY = os.environ["GATEWAY_KEY"]
MODEL = os.environ["MODEL"]
TEXT = os.environ["TEXT"]
MODELS = os.environ["MODELS"].split(",")


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def client(key):
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=EDGE))


gemini = client(KEY)

answer = gemini.models.generate_content(model=MODEL, contents="Say hello.")
check(answer.text == TEXT, f"text: {answer}")
check(answer.usage_metadata.candidates_token_count == 5, f"usage: {answer.usage_metadata}")

chunks = list(gemini.models.generate_content_stream(model=MODEL, contents="Say hello."))
text = "".join(chunk.text or "" for chunk in chunks)
check(text == TEXT, f"streamed text: {text!r}")
check(chunks[-1].usage_metadata.candidates_token_count == 5, "cumulative usage in the last chunk")

counted = gemini.models.count_tokens(model=MODEL, contents="Say hello.")
check(counted.total_tokens > 0, f"count: {counted}")

WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="The weather in a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})])
TOOLS = types.GenerateContentConfig(
    tools=[WEATHER], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
PARIS = {"city": "Paris"}


def tool_round_trip(model):
    """A call asked for, streamed and not, then its result sent back."""
    asked = types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])
    answer = gemini.models.generate_content(model=model, contents=[asked], config=TOOLS)
    calls = answer.function_calls or []
    check(len(calls) == 1 and calls[0].name == "get_weather" and calls[0].args == PARIS, f"{model}: {answer}")
    chunks = list(gemini.models.generate_content_stream(model=model, contents=[asked], config=TOOLS))
    streamed = [call for chunk in chunks for call in chunk.function_calls or []]
    check(len(streamed) == 1 and streamed[0].args == PARIS, f"{model} streamed: {chunks}")
    result = types.Content(role="user", parts=[types.Part.from_function_response(
        name="get_weather", response={"result": "18 C and sunny"})])
    contents = [asked, answer.candidates[0].content, result]
    final = gemini.models.generate_content(model=model, contents=contents, config=TOOLS)
    check(final.text == TEXT, f"{model} after the result: {final}")


if os.environ.get("EMBEDDING_MODEL"):
    embedded = gemini.models.embed_content(model=os.environ["EMBEDDING_MODEL"], contents=["hello", "world"])
    check(len(embedded.embeddings) == 2 and len(embedded.embeddings[0].values) == 3, f"embeddings: {embedded}")

models = [model.name for model in gemini.models.list()]
check(sorted(models) == sorted(f"models/{name}" for name in MODELS), f"models: {models}")

for other in MODELS:
    answer = gemini.models.generate_content(model=other, contents="Say hello.")
    check(answer.text == TEXT, f"{other}: {answer}")
    check(answer.usage_metadata.candidates_token_count == 5, f"{other}: {answer.usage_metadata}")
    chunks = list(gemini.models.generate_content_stream(model=other, contents="Say hello."))
    text = "".join(chunk.text or "" for chunk in chunks)
    check(text == TEXT, f"{other} streamed: {text!r}")
    check(chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP, f"{other}: {chunks[-1]}")
    tool_round_trip(other)

try:
    gemini.models.generate_content(model="no-such-model", contents="x")
    check(False, "an unknown model must raise")
except errors.ClientError as error:
    check(error.code == 404, f"code: {error.code}")

# Held in a variable: a Client closes its connection pool when collected.
stranger = client("sk-wrong")
try:
    stranger.models.generate_content(model=MODEL, contents="x")
    check(False, "a wrong key must raise")
except errors.ClientError as error:
    check(error.code == 401, f"code: {error.code}")

print("ok")
