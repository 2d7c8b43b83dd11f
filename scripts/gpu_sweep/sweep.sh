#!/bin/bash
# GPU sweep, run on the device machine from the repository root with the packed folder carried:
#   VARIANTS="a b" DEADLINE=520 bash scripts/gpu_sweep/sweep.sh      (recipes: $PACK/recipes/NAME.yaml)
# Trains every variant at once (one GPU, 2 CPU threads each), evaluates each at every merge scale in $SCALES,
# stops everything at $DEADLINE seconds, prints a table and leaves runs.tgz (logs, results, adapters) in $OUT.
set -u
T0=$(date +%s); DEADLINE=${DEADLINE:-520}; DEV=${DEV:-cuda}; PACK=${PACK:-.dev}; OUT=${OUT:-/tmp/out}
VARIANTS=${VARIANTS:-$(cd $PACK/recipes && ls *.yaml | sed 's/\.yaml$//')}
export TASKS=${TASKS:-SOHU-dd,CMRC2018Retrieval,BQ,ATEC,SOHU-dc,CSLRetrieval,LCQMC,STSB,PAWSX}
export SCALES=${SCALES:-1,0.7} MAX_STEPS=${MAX_STEPS:-} W=${W:-/tmp/sweep}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 M3E_HOME=${M3E_HOME:-$W/home}
export TOKENIZERS_PARALLELISM=false
D=$(dirname "$0"); R=$W/runs; mkdir -p $R $OUT
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
python3 -c "
import lzma, shutil, tarfile
tarfile.open('$PACK/data.tar.xz').extractall('$W')
with lzma.open('$PACK/e5.bin.xz') as f, open('$W/e5.bin', 'wb') as g:
    shutil.copyfileobj(f, g)" && python3 $D/drive.py base $W/e5.bin || exit 1
echo "setup done at $(( $(date +%s) - T0 )) s"
one() {
  timeout $(left) python3 $D/drive.py run $PACK/recipes/$1.yaml $W/data $R/$1 $DEV > $R/$1.log 2>&1
  echo "$1 rc=$? at $(( $(date +%s) - T0 )) s"; grep -E "trained in|evaluated at" $R/$1.log
}
for v in $VARIANTS; do one $v & done
wait
python3 $D/summary.py $R | tee $OUT/summary.txt
cd $R && tar czf $OUT/runs.tgz *.log */recipe_report.json */eval* */model/adapter 2>/dev/null
