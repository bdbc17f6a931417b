#!/bin/bash
# usage: runv.sh V   (dehaze cards + plain refs with variant V, embed them)
set -e
cd /tmp/glare
X=/work/main/tools/cards/glare/dehaze_experiment.py
PY=/tmp/cards/bin/python
V=$1
rm -rf cards-dcp-$V plain-dcp-$V
$PY $X dehaze --boxes orig.jsonl --variant $V --out cards-dcp-$V --info info-$V.json --truth /tmp/h/cards-devtrain/truth.json
$PY $X dehaze --boxes plain.jsonl --variant $V --out plain-dcp-$V --info plain-info-$V.json
ls -d $PWD/cards-dcp-$V/*.jpg > list-$V.txt
ls -d $PWD/plain-dcp-$V/*.jpg > plist-$V.txt
$PY $X embed --facegate /tmp/glare/facegate --list list-$V.txt --out dcp-$V.jsonl
$PY $X embed --facegate /tmp/glare/facegate --list plist-$V.txt --out plain-dcp-$V.jsonl
echo done
