#!/bin/sh
# Reproduce every figure of models/MODEL_CARD_emotion.md with `edge-fer eval` (the pipeline's own
# preprocessing). Usage, from the repository root with the venv active:
#   models/training/evaluate.sh ../shared/datasets/fer2013 RUN_DIR
# RUN_DIR is the training run folder (for the held-out split used for calibration).
set -eu
DATA=$1
RUN=$2
WORK=$(mktemp -d)
tar xf "$DATA/public_test.tar" -C "$WORK"
echo "== public test split, FER2013 labels (n = 3589)"
for model in edge_fer_emotion edge_fer_emotion_float mini_xception; do
    edge-fer eval "$WORK/public_test" --model "$model" --json > "$WORK/$model.json"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['model'], 'accuracy', r['accuracy'], 'macro_f1', r['macro_f1'], 'ece', r['ece'], 'ms_per_face', r['ms_per_face']); print('  recall', {k: v['recall'] for k, v in r['per_class'].items()})" "$WORK/$model.json"
done
edge-fer eval "$WORK/public_test" --model edge_fer_emotion --plot models/confusion_edge_fer_emotion.png > /dev/null
echo "== ECE on the public test split before calibration (temperature 1)"
edge-fer eval "$WORK/public_test" --model edge_fer_emotion --temperature 1 --json | python3 -c "import json,sys; print('ece', json.load(sys.stdin)['ece'])"
echo "== calibration on the held-out 10 % of the training split (temperature for the manifest)"
[ -d "$RUN/heldout" ] || python models/training/train_fer.py heldout --data "$DATA" --out "$RUN"
edge-fer eval "$RUN/heldout" --model edge_fer_emotion --fit-temperature
rm -rf "$WORK"
