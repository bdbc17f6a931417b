"""Gated variant = ungated variant's dehazed card where t_centre < gate, original card elsewhere
(exact, since facegate embed is deterministic and a gated-off card is byte-identical)."""
import json,csv,numpy as np,sys
V=sys.argv[1]; gates=[float(x) for x in sys.argv[2:]]
cond={r['image']:r for r in csv.DictReader(open('/tmp/h/cards-devtrain/conditions.tsv'),delimiter='\t')}
pairs=[r for r in csv.DictReader(open('/tmp/h/cards-devtrain/pairs.tsv'),delimiter='\t')]
plain=[r for r in csv.DictReader(open('/tmp/h/cards-devtrain/plain-pairs.tsv'),delimiter='\t')][:100]
L=lambda f:{json.loads(l)['image']:json.loads(l) for l in open(f)}
P,O,D=L('probes.jsonl'),L('orig.jsonl'),L(f'dcp-{V}.jsonl'); info=json.load(open(f'info-{V}.json'))
PL,PD=L('plain.jsonl'),L(f'plain-dcp-{V}.jsonl'); pinfo=json.load(open(f'plain-info-{V}.json'))
def c(a,b):
    if not(a and b): return -1.
    a,b=np.array(a,float),np.array(b,float); return a@b/np.linalg.norm(a)/np.linalg.norm(b)
dp=lambda k:f'/tmp/glare/cards-dcp-{V}/'+k.split('/')[-1]
for gate in gates:
    use=lambda k: (not info[k].get('oracle_box')) and info[k].get('t_centre',1)<gate
    ref=lambda k: (D[dp(k)] if use(k) else O[k])['descriptor']
    # FMR 1e-3 threshold from all cross-role impostors
    pk=sorted({r['probe'] for r in pairs}); rk=sorted({r['reference'] for r in pairs})
    pn={r['probe']:r['probe_person'] for r in pairs}; rn={r['reference']:r['reference_person'] for r in pairs}
    pk=[k for k in pk if P[k]['descriptor']]
    Pm=np.array([P[k]['descriptor'] for k in pk],float); Pm/=np.linalg.norm(Pm,axis=1,keepdims=True)
    thr={}
    for tag,get in [('before',lambda k:O[k]['descriptor']),('after',ref)]:
        rr=[k for k in rk if get(k)]; R=np.array([get(k) for k in rr],float); R/=np.linalg.norm(R,axis=1,keepdims=True)
        S=Pm@R.T; m=np.array([[pn[a]!=rn[b] for b in rr] for a in pk]); s=np.sort(S[m])[::-1]; thr[tag]=s[int(len(s)*1e-3)]
    print(f"\n{V} gated at t_centre<{gate}: FMR1e-3 threshold {thr['before']:.4f}->{thr['after']:.4f}")
    for g in ['none','off_portrait','on_portrait']:
        b=[];a=[];n_app=0
        for r in pairs:
            k=r['reference']
            if cond[k]['glare']!=g: continue
            p=P[r['probe']]['descriptor']; b.append(c(p,O[k]['descriptor'])); a.append(c(p,ref(k))); n_app+=use(k)
        b,a=np.array(b),np.array(a); ok=(b>-1)&(a>-1); ch=a[ok]-b[ok]
        print(f"  {g:13s} n={len(b)} applied {n_app} refused {(b==-1).sum()}->{(a==-1).sum()} mean change {ch.mean():+.4f} sd {ch.std():.4f} "
              f">=0.2949 {(b>=.2949).sum()}->{(a>=.2949).sum()} >=0.40 {(b>=.4).sum()}->{(a>=.4).sum()} "
              f"FNMR@FMR1e-3 {(b<thr['before']).mean():.1%}->{(a<thr['after']).mean():.1%}")
    ch=[];napp=0
    for r in plain:
        k=r['reference']; u=pinfo[k].get('t_centre',1)<gate; napp+=u
        p=P.get(r['probe'],PL.get(r['probe']))['descriptor']
        ch.append(c(p,(PD['/tmp/glare/plain-dcp-'+V+'/'+k.split('/')[-1]] if u else PL[k])['descriptor'])-c(p,PL[k]['descriptor']))
    ch=np.array(ch); print(f"  plain LFW refs: applied {napp}/100, change mean {ch.mean():+.4f} sd {ch.std():.4f} min {ch.min():+.4f} max {ch.max():+.4f}")
