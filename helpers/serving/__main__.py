"""Run the chat server: ``python -m helpers.serving MODEL_DIR --port 8000``.

Its OpenAI-compatible base URL is then ``http://127.0.0.1:8000/v1``.
"""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(description=__doc__)
    made.add_argument("model_dir", help="a checkpoint folder with safetensors weights")
    made.add_argument("--host", default="127.0.0.1")
    made.add_argument("--port", type=int, default=8000)
    made.add_argument("--max-pending", type=int, default=8)
    made.add_argument("--max-body-bytes", type=int, default=64_000)
    made.add_argument("--model-name", default="course-model", help="the name /v1/models lists")
    return made


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)

    import uvicorn

    from .app import create_app

    app = create_app(
        args.model_dir,
        model_name=args.model_name,
        max_pending=args.max_pending,
        max_body_bytes=args.max_body_bytes,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
