"""The measuring page: a local web page that predicts metric depth for your photos with a trained model.

``python -m tfdepth.measure --model PATH [--host 127.0.0.1] [--port 8080] [--max-upload-mb 20]
[--workers 2] [--queue 8]``

Serves the page for a trained model (a training workdir / checkpoint, a SavedModel or a .tflite
file). Open the printed address in a browser, then open or drop a photo: the page shows it beside its
predicted depth (near red, far blue, a colour bar in metres), reads the depth under the pointer,
measures the 3-D distance between two clicked points, and, given the photo's ground-truth depth
(16-bit PNG with its scale, or .npy metres), shows it beside the prediction with AbsRel / RMSE / δ1 and
the per-range table.
"""

from __future__ import annotations

import argparse
import sys

from tfdepth import cli


def build_parser() -> argparse.ArgumentParser:
    from tfdepth.measure.server import DEFAULT_QUEUE, DEFAULT_WORKERS

    parser = argparse.ArgumentParser(prog="python -m tfdepth.measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="workdir / checkpoint, SavedModel dir, or .tflite file")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this computer only; 0.0.0.0 exposes the page "
                             "to your network)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload in MB (default 20)")
    parser.add_argument("--max-megapixels", type=float, default=50.0,
                        help="largest accepted picture in megapixels (default 50)")
    parser.add_argument("--keep", type=int, default=4, help="pictures held in memory at once (default 4)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"uploads processed at once (default {DEFAULT_WORKERS}; the model is CPU-bound)")
    parser.add_argument("--queue", type=int, default=DEFAULT_QUEUE,
                        help=f"uploads waiting for a worker (default {DEFAULT_QUEUE}); more are answered "
                             "503 + Retry-After")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--intrinsics", help="fx,fy,cx,cy in pixels of your pictures: the page's default camera")
    group.add_argument("--fov", type=float, help="horizontal field of view in degrees: the page's default camera")
    parser.add_argument("--threads", type=int, default=None, help="TFLite interpreter threads")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.workers < 1 or args.queue < 0:
        raise ValueError(f"--workers must be at least 1 and --queue at least 0, got {args.workers} and {args.queue}")
    from tfdepth.geometry import Intrinsics
    from tfdepth.serving.predictor import DepthPredictor
    from tfdepth.measure.app import MeasureApp
    from tfdepth.measure.server import MeasureServer

    fixed = Intrinsics.parse(args.intrinsics) if args.intrinsics else None
    predictor = DepthPredictor.load(args.model, num_threads=args.threads)
    app = MeasureApp(predictor, args.model, max_upload_bytes=int(args.max_upload_mb * 1e6),
                     max_pictures=args.keep, max_pixels=int(args.max_megapixels * 1e6), fixed_intrinsics=fixed,
                     fov_deg=args.fov)
    try:
        server = MeasureServer(app, args.host, args.port, verbose=not args.quiet, workers=args.workers,
                               queue=args.queue)
    except OSError as e:
        raise ValueError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}); try another --port") from None
    print(f"model: {predictor.describe()}")
    if not server.loopback_only:
        print(f"warning: listening on {args.host}: anyone who can reach this computer can use the page",
              file=sys.stderr)
    print(f"measuring page: {server.url}  (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
