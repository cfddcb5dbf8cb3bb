"""Run the chat server: ``python -m helpers.serving MODEL_DIR --port 8000``."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir", help="a checkpoint folder with safetensors weights")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-pending", type=int, default=8)
    parser.add_argument("--max-body-bytes", type=int, default=64_000)
    parser.add_argument("--model-name", default="course-model")
    args = parser.parse_args(argv)

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
