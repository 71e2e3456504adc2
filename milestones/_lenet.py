"""What the two LeNet milestones share: their options and their run.

Everything every milestone shares (common options, checks, one-line errors, resuming) is `_common`'s;
so is the CIFAR-10 run (split, normalisation, augmentation, loaders, Trainer, end-of-run report), so all
CIFAR-10 milestones prepare and report data the same way. A LeNet script supplies its model builder, its
name and its default hyper-parameters.
"""
from _common import cifar10_start, cifar10_trainer, finish, milestone_parser, parse, resume, run


def parse_args(doc, defaults, argv=None):
    parser = milestone_parser(doc, epochs=defaults["epochs"], batch_size=128,
                              quick="5,000 training, 1,000 validation and 1,000 test images, 2 epochs")
    parser.add_argument("--lr", type=float, default=defaults["lr"], help=f"peak learning rate of SGD (default {defaults['lr']})")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=defaults["weight_decay"],
                        help=f"(default {defaults['weight_decay']})")
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay to 0")
    parser.add_argument("--crop-padding", type=int, default=defaults["crop_padding"],
                        help=f"random crop with this padding as augmentation (default {defaults['crop_padding']}; 0 = off)")
    parser.add_argument("--no-flip", action="store_true", help="turn off random horizontal flips")
    return parse(parser, argv, train_size=50_000, quick_epochs=2)


def main(script, doc, name, title, build_model, defaults, argv=None):
    """Train `build_model()` on CIFAR-10 as the MLP milestone does (run it through `run_milestone`)."""
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import SGD
    args = parse_args(doc, defaults, argv)
    started, data, loaders = cifar10_start(args)
    model = build_model()
    optimizer = SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    trainer, _ = cifar10_trainer(args, name, title, model, optimizer, cross_entropy, data, loaders)
    resume(trainer, args)
    trainer.fit(args.epochs)
    extra = lambda: {"best_val_accuracy": max(r.get("val_accuracy", 0.0) for r in trainer.history),
                     "parameters": sum(p.size for p in model.parameters())}
    return finish(script, args, argv, trainer, cross_entropy, loaders[2], started, extra=extra)


def run_milestone(script, doc, name, title, build_model, defaults, argv=None):
    """The milestone's exit status; expected mistakes are one line on stderr and status 2 (`_common.run`)."""
    return run(lambda args: main(script, doc, name, title, build_model, defaults, args), argv)
