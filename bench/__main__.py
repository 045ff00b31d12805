"""Run every benchmark: `make bench`."""

from rich.console import Console

from bench import pure_path

console = Console()
console.print("[bold]benchmarks[/bold] (figures depend on the machine; ratios are what compare)")
pure_path.main(console)
