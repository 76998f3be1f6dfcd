"""Posts no page of ours sends: a file in a text field, a field twice, a body that is not a
form, bytes that are not UTF-8. Each is a set of keyword arguments for a Flask test
client's `post` (or `requests.post`, through `as_requests`), carrying the CSRF token in
the `X-CSRFToken` header as well, so that the post reaches the form handling even where
its body cannot be read.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from werkzeug.datastructures import FileStorage

# The size the service takes in one request (provider/__init__.py, MAX_REQUEST_BYTES).
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class Post:
    """One malformed post: `body` (bytes) with `content_type`, or `data` for the client to
    encode (a dict whose values may be files or lists)."""

    name: str
    content_type: str | None = None
    body: bytes | None = None
    data: Mapping[str, Any] | None = None

    def for_client(self, token: str) -> dict[str, Any]:
        headers = {"X-CSRFToken": token}
        if self.data is not None:
            return {"data": dict(self.data), "headers": headers}
        return {"data": self.body, "content_type": self.content_type, "headers": headers}


def urlencoded(pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"b0undary") -> bytes:
    """A multipart body from (raw name, raw value) parts, bytes as given."""
    out = b""
    for name, value in parts:
        out += b"--" + boundary + b"\r\n"
        out += b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n'
        out += value + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def as_file(text: str) -> FileStorage:
    return FileStorage(io.BytesIO(text.encode()), filename="field.txt")


def malformed_posts(fields: Mapping[str, str], token: str, text_field: str) -> list[Post]:
    """Each malformed post of a form whose valid fields are `fields` (its CSRF token
    `token` included in each body too); `text_field` is the text field abused."""
    form = {"csrf_token": token, **fields}
    pairs = list(form.items())
    value = fields[text_field]
    return [
        Post("file in a text field", data={**form, text_field: as_file(value)}),
        Post(
            "a file beside the fields",
            data={**form, "extra": as_file("x")},
        ),
        Post("a field twice", data={**form, text_field: [value, value + "x"]}),
        Post(
            "the CSRF token twice",
            content_type="application/x-www-form-urlencoded",
            body=urlencoded([*pairs, ("csrf_token", token)]),
        ),
        Post("text/plain", content_type="text/plain", body=urlencoded(pairs)),
        Post("JSON", content_type="application/json", body=json.dumps(form).encode()),
        Post(
            "JSON with a number",
            content_type="application/json",
            body=json.dumps({**form, text_field: 12345}).encode(),
        ),
        Post("no content type", content_type="", body=urlencoded(pairs)),
        Post(
            "multipart without a boundary",
            content_type="multipart/form-data",
            body=multipart([(k.encode(), v.encode()) for k, v in pairs]),
        ),
        Post(
            "garbage multipart",
            content_type="multipart/form-data; boundary=b0undary",
            body=b"--b0undary\r\nnot a header\r\n\r\n\xff\xfe--b0und",
        ),
        Post(
            "raw invalid UTF-8 value",
            content_type="application/x-www-form-urlencoded",
            body=urlencoded(pairs) + b"&" + text_field.encode() + b"=\xff\xfe",
        ),
        Post(
            "percent-encoded invalid UTF-8 value",
            content_type="application/x-www-form-urlencoded",
            body=urlencoded([(k, v) for k, v in pairs if k != text_field])
            + f"&{text_field}=%FF%FE".encode(),
        ),
        Post(
            "percent-encoded invalid UTF-8 name",
            content_type="application/x-www-form-urlencoded",
            body=urlencoded(pairs) + b"&%C3%28=1",
        ),
        Post(
            "multipart invalid UTF-8 value",
            content_type="multipart/form-data; boundary=b0undary",
            body=multipart(
                [(k.encode(), v.encode()) for k, v in pairs if k != text_field]
                + [(text_field.encode(), b"\xff\xfe")]
            ),
        ),
        Post(
            "multipart invalid UTF-8 name",
            content_type="multipart/form-data; boundary=b0undary",
            body=multipart([(k.encode(), v.encode()) for k, v in pairs] + [(b"\xff", b"1")]),
        ),
        Post(
            "multipart part without a readable name",
            content_type="multipart/form-data; boundary=b0undary",
            body=multipart([(k.encode(), v.encode()) for k, v in pairs] + [(b"\\", b"")]),
        ),
        Post(
            "a NUL character",
            content_type="application/x-www-form-urlencoded",
            body=urlencoded([(k, v + "\x00" if k == text_field else v) for k, v in pairs]),
        ),
        Post(
            "a huge field (under the request size)",
            content_type="application/x-www-form-urlencoded",
            body=urlencoded([(k, v) for k, v in pairs if k != text_field])
            + f"&{text_field}=".encode()
            + b"a" * (MAX_REQUEST_BYTES - 2048),
        ),
    ]


def oversized(fields: Mapping[str, str], token: str, text_field: str) -> Post:
    """Over the request size: 413 is the answer."""
    pairs = [("csrf_token", token), *fields.items()]
    return Post(
        "over the request size",
        content_type="application/x-www-form-urlencoded",
        body=urlencoded(pairs) + f"&{text_field}=".encode() + b"a" * MAX_REQUEST_BYTES,
    )


# -- arbitrary posts, for the property-based tests ------------------------------------


@dataclass(frozen=True)
class Upload:
    """A file part (a filename is what makes a multipart part a file)."""

    content: bytes


FieldValue = str | bytes | Upload  # bytes: sent as they are (maybe not UTF-8)


@dataclass(frozen=True)
class ArbitraryPost:
    """A post as a fuzzer draws it; `body()` makes its bytes with the page's CSRF token.

    `encoding`: "urlencoded" or "multipart" (the fields encoded so), or a content type
    sent as it is with the fields urlencoded (text/plain, JSON, nothing, garbage) or with
    `raw` as the whole body."""

    fields: tuple[tuple[str | bytes, FieldValue], ...]
    encoding: str
    token_in_body: bool
    raw: bytes | None = None

    def body(self, token: str) -> tuple[bytes, str]:
        fields = (("csrf_token", token), *self.fields) if self.token_in_body else self.fields
        if self.encoding == "multipart":
            return _multipart(fields), "multipart/form-data; boundary=fuzzB0undary"
        content_type = (
            "application/x-www-form-urlencoded" if self.encoding == "urlencoded" else self.encoding
        )
        if self.raw is not None:
            return self.raw, content_type
        return _urlencoded(fields), content_type


def _raw(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode()


def _urlencoded(fields: tuple[tuple[str | bytes, FieldValue], ...]) -> bytes:
    def one(value: FieldValue) -> bytes:
        if isinstance(value, Upload):
            return quote(value.content).encode()
        if isinstance(value, bytes):
            return value  # as it is: raw bytes in the body
        return quote(value).encode()

    return b"&".join(quote(_raw(name)).encode() + b"=" + one(value) for name, value in fields)


def _multipart(fields: tuple[tuple[str | bytes, FieldValue], ...]) -> bytes:
    out = b""
    for name, value in fields:
        out += b'--fuzzB0undary\r\nContent-Disposition: form-data; name="' + _raw(name) + b'"'
        if isinstance(value, Upload):
            out += b'; filename="f.txt"\r\nContent-Type: text/plain\r\n\r\n' + value.content
        else:
            out += b"\r\n\r\n" + _raw(value)
        out += b"\r\n"
    return out + b"--fuzzB0undary--\r\n"


def arbitrary_posts(real_names: list[str], plausible: list[str]) -> Any:
    """A Hypothesis strategy of `ArbitraryPost`s: field names drawn from the form's own
    and any text or bytes; values plausible for the form, any text, bytes, files, and
    huge ones; fields repeated as the draw falls; any encoding or content type."""
    from hypothesis import strategies as st

    names = st.one_of(
        st.sampled_from(real_names), st.text(max_size=12), st.binary(min_size=1, max_size=6)
    )
    values = st.one_of(
        st.sampled_from(plausible),
        st.text(max_size=40),
        st.binary(max_size=16),
        st.builds(Upload, st.binary(max_size=32)),
        st.sampled_from(["a" * 300, "7" * 5000, "x" * (MAX_REQUEST_BYTES - 4096)]),
    )
    encodings = st.one_of(
        st.sampled_from(
            [
                "urlencoded",
                "urlencoded",
                "multipart",
                "multipart",
                "text/plain",
                "application/json",
                "",
                "multipart/form-data",
                "multipart/form-data; boundary=fuzzB0undary",
                "application/x-www-form-urlencoded; charset=latin-1",
            ]
        ),
        # Printable ASCII: what any HTTP client can put in a header.
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    )
    anything = st.builds(
        ArbitraryPost,
        fields=st.lists(st.tuples(names, values), max_size=8).map(tuple),
        encoding=encodings,
        token_in_body=st.booleans(),
        raw=st.one_of(st.none(), st.binary(max_size=200), st.just(b'{"csrf_token": 1}')),
    )
    # As often: a form as a browser sends it (each name once, text any browser can send),
    # so that half the draws get past the refusal of malformed posts to the form itself.
    typed = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
    well_formed = st.builds(
        ArbitraryPost,
        fields=st.lists(
            st.tuples(
                st.one_of(st.sampled_from(real_names), typed),
                st.one_of(
                    st.sampled_from(plausible), typed, st.sampled_from(["a" * 300, "7" * 5000])
                ),
            ),
            max_size=8,
            unique_by=lambda field: field[0],
        ).map(tuple),
        encoding=st.sampled_from(["urlencoded", "multipart"]),
        token_in_body=st.just(True),
    )
    return st.one_of(well_formed, anything)
