"""Build a small study database with the code in PYTHONPATH (the committed version)."""
import os, signal, subprocess, sys
from pathlib import Path

out = Path(sys.argv[1]).absolute()
out.mkdir(parents=True, exist_ok=True)
db = out / "study.db"
toml = out / "legacy.toml"
toml.write_text(f'''
study = "legacy"
storage = "sqlite:///{db}"
out = "{out}"
trials = 4
workers = 1
sampler = "random"
seed = 3
targets = ["local-cpu", "paper-arm-sd810"]
deploy_input = 32
deploy_classes = 10
presets = ["0.5x"]
progress = false
[budgets]
params = 300000
[space]
width_ranges = [[40, 48], [88, 96], [184, 192]]
depth_ranges = [[1, 4], [1, 8], [1, 4]]
stem_choices = [24]
conv5_choices = [1024]
[proxy]
epochs = 1
max_train_batches = 2
batch_size = 32
[latency]
measure_budget_s = 0.05
''')
exe = [sys.executable, "-m", "experiments", "search", "--config", str(toml)]
env = dict(os.environ, SHUFFLENAS_TRACE="1")
# 1. a driver killed while trial 1 trains: it stays RUNNING, the next run re-queues it
proc = subprocess.Popen(exe + ["--trials", "2"], env=env, stderr=subprocess.PIPE, text=True)
for line in proc.stderr:
    sys.stderr.write(line)
    if line.startswith("trace: train 1"):
        proc.send_signal(signal.SIGKILL)
        break
proc.wait()
# 2. resume to 4 trials (recovers the stale one)
subprocess.run(exe, check=True)
# 3. a second study on the same storage and proxy setup: the presets' results are reused
subprocess.run(exe + ["--study", "legacy-b", "--trials", "2"], check=True)
