"""Train one variant and print a per-epoch table.

python -m models.train --variant optimized --epochs 3
python -m models.train --variant naive --latency remote --format image_folder
python -m models.train --variant augmented --data ~/cifar-10-batches-py --model cifar_cnn_bn
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import pipelines
from models.trainer import EpochStats, InitialModel, summarize, train_variant
from models.zoo import MODELS, build_for
from pipelines.data.embedded import EMBEDDED_PROFILES, FORMATS
from pipelines.data.opening import DataChoice, open_data, parse_image_size
from pipelines.errors import InputError
from pipelines.plugins import add_plugin_argument, load_plugins
from pipelines.steps import image_shape_for

HEADER = (
    f"{'epoch':>5} {'wall s':>8} {'examples/s':>11} {'input-bound':>12}"
    f" {'train acc':>10} {'test acc':>9}"
)


def format_row(stats: EpochStats) -> str:
    """One line of the per-epoch table."""
    test = "-" if stats.test_accuracy is None else f"{stats.test_accuracy:.3f}"
    return (
        f"{stats.epoch:>5} {stats.wall_s:>8.2f} {stats.examples_per_s:>11.1f}"
        f" {stats.input_bound * 100:>11.1f}% {stats.train_accuracy:>10.3f} {test:>9}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m models.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--variant", default="optimized", help="a registered variant")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--model", default="tiny", help=f"one of {', '.join(MODELS)}, or module:callable"
    )
    parser.add_argument("--data", default="embedded", help="'embedded' or a dataset path")
    parser.add_argument("--profile", default="smoke", choices=sorted(EMBEDDED_PROFILES))
    parser.add_argument("--format", default="tfrecord", choices=FORMATS, help="embedded format")
    parser.add_argument("--latency", default="none", help="none, remote, or open=20ms,read=1ms")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--image-size", default=None, help="N or HxW the model sees (default: the source's)"
    )
    add_plugin_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    args = parse_args(argv)
    try:
        load_plugins(args.plugin, "--plugin")
        variant = pipelines.get(args.variant)
        size = parse_image_size(args.image_size) if args.image_size else None
        choice = DataChoice(args.data, args.profile, args.format, args.latency)
        if size:
            choice = dataclasses.replace(choice, image_size=size)
        train_source, test_source = open_data(choice)
        shape, classes = image_shape_for(train_source, size), train_source.num_classes
        initial = InitialModel(lambda: build_for(args.model, shape, classes), seed=args.seed)
        print(f"variant  {variant.name}: {variant.describe()}")
        print(f"data     {train_source.describe()}")
        print(
            f"model    {args.model} on {'x'.join(map(str, shape))} images, batch {args.batch_size},"
            f" {args.epochs} epochs, seed {args.seed}"
        )
        print(HEADER, flush=True)
        history = train_variant(
            variant,
            train_source,
            test_source,
            initial,
            args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            image_size=size,
            on_epoch=lambda stats: print(format_row(stats), flush=True),
        )
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    total = summarize(history)
    print(
        f"total {total['train_s']:.2f} s training, {total['examples_per_s']:.1f} examples/s,"
        f" input-bound {total['input_bound'] * 100:.1f}%,"
        f" test accuracy {total['final_test_accuracy']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
