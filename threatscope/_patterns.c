/* threatscope._native (detect part): many literals found in many strings in one pass each, and
   the rows those findings hold on as bitmaps (detect/engine.py; both have pure DuckDB twins).

   patterns(entries, fold) -> Patterns
       entries: (pattern bytes, kind, leaf id) triples; kind 0 contains, 1 starts with,
       2 ends with, 3 equals. fold: match ASCII letters in any case (the caller lower-cases
       the patterns and any non-ASCII text as DuckDB's lower() does).
   Patterns.scan(n, offset, validity, offsets, data, skip_odd=True) -> (values, leaves, skipped)
       over an Arrow string array: every (value index, leaf id) whose test holds, once each,
       as two int32 buffers (ordered by value). A folding automaton skips the values with
       non-ASCII bytes (unless skip_odd is false) and lists them (int32), for the caller to
       lower-case and scan again.
   leaf_csr(nvalues, values, leaves) -> (offsets, ids)
       the pairs grouped by value (int32 offsets of nvalues + 1, int32 leaf ids).
   leaf_bits(offsets, ids, nleaves, indices, ioffset, validity, null_value, start, count)
       -> (slots, bitmaps)
       rows start .. start+count-1 of a column given as dictionary indices (int32 buffer and
       validity, from element ioffset; indices None: row i is value i): the leaf ids holding
       on some row (int32, in order of first row) and, per such leaf, an Arrow bitmap of
       count bits, one after the other. A NULL row takes value null_value (-1: none).

   The automaton is Aho-Corasick made a full DFA over byte classes (bytes no pattern has
   share one class), so each input byte costs one table look-up. The GIL is released while
   strings are scanned. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t leaf, kind, len;
} Entry;

typedef struct {
    PyObject_HEAD
    int fold;
    int32_t nstates, nclasses, max_leaf;
    uint8_t cls[256];
    int32_t *delta;   /* nstates * nclasses */
    int32_t *report;  /* per state: the state whose entries to report first (itself or the
                         nearest on its failure chain with entries), -1 none */
    int32_t *next;    /* per state with entries: the next such state on its failure chain */
    int32_t *ent_at;  /* per state: start of its entries (nstates + 1) */
    Entry *ent;
} Patterns;

static void patterns_dealloc(Patterns *p) {
    free(p->delta);
    free(p->report);
    free(p->next);
    free(p->ent_at);
    free(p->ent);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static inline uint8_t fold_byte(uint8_t b) { return (b >= 'A' && b <= 'Z') ? b + 32 : b; }

typedef struct {
    void *p;
    size_t len, cap, item;
} Vec;

static int vec_push(Vec *v, const void *x) {
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 1024;
        void *p = realloc(v->p, cap * v->item);
        if (!p)
            return -1;
        v->p = p;
        v->cap = cap;
    }
    memcpy((char *)v->p + v->len * v->item, x, v->item);
    v->len++;
    return 0;
}

static PyTypeObject PatternsType;

static PyObject *patterns_new(PyObject *self, PyObject *args) {
    PyObject *entries;
    int fold;
    if (!PyArg_ParseTuple(args, "Op", &entries, &fold))
        return NULL;
    PyObject *seq = PySequence_Fast(entries, "patterns: entries must be a sequence");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Patterns *p = PyObject_New(Patterns, &PatternsType);
    if (!p) {
        Py_DECREF(seq);
        return NULL;
    }
    p->fold = fold;
    p->delta = p->report = p->next = p->ent_at = NULL;
    p->ent = NULL;
    p->max_leaf = -1;
    /* byte classes: every byte a pattern has gets its own, the others share class 0 */
    int used[256] = {0};
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        char *s;
        Py_ssize_t len;
        int kind, leaf;
        if (!PyTuple_Check(t) || !PyArg_ParseTuple(t, "y#ii", &s, &len, &kind, &leaf))
            goto fail_type;
        if (len == 0 || kind < 0 || kind > 3 || leaf < 0) {
            PyErr_SetString(PyExc_ValueError, "patterns: empty pattern, bad kind or leaf");
            goto fail;
        }
        for (Py_ssize_t k = 0; k < len; k++)
            used[fold ? fold_byte((uint8_t)s[k]) : (uint8_t)s[k]] = 1;
        if (leaf > p->max_leaf)
            p->max_leaf = leaf;
    }
    p->nclasses = 1;
    for (int b = 0; b < 256; b++)
        p->cls[b] = used[b] ? (uint8_t)p->nclasses++ : 0;
    if (fold)
        for (int b = 'A'; b <= 'Z'; b++)
            p->cls[b] = p->cls[b + 32];
    /* the trie: delta rows grow with states; -1 = no edge (until the DFA is completed) */
    int32_t C = p->nclasses;
    size_t cap = 1024;
    int32_t ns = 1;
    int32_t *delta = malloc(cap * C * sizeof(int32_t));
    Vec ents = {NULL, 0, 0, sizeof(int64_t) * 2}; /* (state, entry index) pairs */
    Vec elist = {NULL, 0, 0, sizeof(Entry)};
    if (!delta)
        goto nomem;
    p->delta = delta;
    for (int32_t c = 0; c < C; c++)
        delta[c] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        char *s;
        Py_ssize_t len;
        int kind, leaf;
        PyArg_ParseTuple(t, "y#ii", &s, &len, &kind, &leaf);
        int32_t st = 0;
        for (Py_ssize_t k = 0; k < len; k++) {
            int32_t c = p->cls[(uint8_t)s[k]];
            if (delta[(size_t)st * C + c] < 0) {
                if ((size_t)ns == cap) {
                    cap *= 2;
                    int32_t *d = realloc(delta, cap * C * sizeof(int32_t));
                    if (!d)
                        goto nomem;
                    p->delta = delta = d;
                }
                for (int32_t x = 0; x < C; x++)
                    delta[(size_t)ns * C + x] = -1;
                delta[(size_t)st * C + c] = ns++;
            }
            st = delta[(size_t)st * C + c];
        }
        Entry e = {leaf, kind, (int32_t)len};
        int64_t pair[2] = {st, (int64_t)elist.len};
        if (vec_push(&elist, &e) || vec_push(&ents, pair))
            goto nomem;
    }
    p->nstates = ns;
    /* entries grouped by state */
    p->ent_at = calloc((size_t)ns + 1, sizeof(int32_t));
    p->ent = malloc((elist.len ? elist.len : 1) * sizeof(Entry));
    p->report = malloc((size_t)ns * sizeof(int32_t));
    p->next = malloc((size_t)ns * sizeof(int32_t));
    int32_t *fail = malloc((size_t)ns * sizeof(int32_t));
    int32_t *queue = malloc((size_t)ns * sizeof(int32_t));
    if (!p->ent_at || !p->ent || !p->report || !p->next || !fail || !queue) {
        free(fail);
        free(queue);
        goto nomem;
    }
    int64_t *pairs = ents.p;
    for (size_t k = 0; k < ents.len; k++)
        p->ent_at[pairs[2 * k] + 1]++;
    for (int32_t s = 0; s < ns; s++)
        p->ent_at[s + 1] += p->ent_at[s];
    {
        int32_t *fill = calloc((size_t)ns, sizeof(int32_t));
        if (!fill) {
            free(fail);
            free(queue);
            goto nomem;
        }
        for (size_t k = 0; k < ents.len; k++) {
            int32_t s = (int32_t)pairs[2 * k];
            p->ent[p->ent_at[s] + fill[s]++] = ((Entry *)elist.p)[pairs[2 * k + 1]];
        }
        free(fill);
    }
    /* breadth first: failure links, the full DFA, and report/next chains */
    int32_t head = 0, tail = 0;
    fail[0] = 0;
    p->report[0] = p->ent_at[1] > p->ent_at[0] ? 0 : -1;
    p->next[0] = -1;
    for (int32_t c = 0; c < C; c++) {
        int32_t t = delta[c];
        if (t < 0) {
            delta[c] = 0;
        } else {
            fail[t] = 0;
            queue[tail++] = t;
        }
    }
    while (head < tail) {
        int32_t s = queue[head++];
        int32_t f = fail[s];
        int has = p->ent_at[s + 1] > p->ent_at[s];
        p->next[s] = p->report[f];
        p->report[s] = has ? s : p->report[f];
        for (int32_t c = 0; c < C; c++) {
            int32_t t = delta[(size_t)s * C + c];
            if (t < 0) {
                delta[(size_t)s * C + c] = delta[(size_t)f * C + c];
            } else {
                fail[t] = delta[(size_t)f * C + c];
                queue[tail++] = t;
            }
        }
    }
    free(fail);
    free(queue);
    free(ents.p);
    free(elist.p);
    Py_DECREF(seq);
    return (PyObject *)p;
nomem:
    free(ents.p);
    free(elist.p);
    PyErr_NoMemory();
    goto fail;
fail_type:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "patterns: entries are (bytes, kind, leaf) tuples");
fail:
    Py_DECREF(seq);
    Py_DECREF(p);
    return NULL;
}

static inline int bit(const uint8_t *bits, int64_t i) { return (bits[i >> 3] >> (i & 7)) & 1; }

static PyObject *patterns_scan(Patterns *p, PyObject *args) {
    Py_ssize_t n, offset;
    PyObject *valid_obj;
    Py_buffer offs = {0}, data = {0}, valid = {0};
    int skip_odd = 1;
    if (!PyArg_ParseTuple(args, "nnOy*y*|p", &n, &offset, &valid_obj, &offs, &data, &skip_odd))
        return NULL;
    PyObject *res = NULL;
    int has_valid = valid_obj != Py_None;
    if (has_valid && PyObject_GetBuffer(valid_obj, &valid, PyBUF_SIMPLE)) {
        has_valid = 0;
        goto done;
    }
    const int32_t *off = (const int32_t *)offs.buf + offset;
    if (n < 0 || offset < 0 || offs.len < (Py_ssize_t)sizeof(int32_t) * (offset + n + 1) ||
        (has_valid && valid.len * 8 < offset + n) || (n && (off[0] < 0 || off[n] > data.len))) {
        PyErr_SetString(PyExc_ValueError, "scan: buffers shorter than the array");
        goto done;
    }
    Vec vals = {NULL, 0, 0, sizeof(int32_t)}, leaves = {NULL, 0, 0, sizeof(int32_t)};
    Vec odd = {NULL, 0, 0, sizeof(int32_t)};
    int32_t *stamp = malloc(((size_t)p->max_leaf + 1) * sizeof(int32_t));
    int failed = stamp == NULL;
    Py_BEGIN_ALLOW_THREADS
    if (stamp)
        for (int32_t k = 0; k <= p->max_leaf; k++)
            stamp[k] = -1;
    const uint8_t *base = data.buf;
    const int32_t C = p->nclasses;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        if (has_valid && !bit(valid.buf, offset + i))
            continue;
        const uint8_t *s = base + off[i];
        int64_t len = off[i + 1] - off[i];
        if (p->fold && skip_odd) { /* non-ASCII: left to the caller, to lower-case as DuckDB does */
            int64_t k = 0;
            while (k < len && s[k] < 0x80)
                k++;
            if (k < len) {
                int32_t vi = (int32_t)i;
                if (vec_push(&odd, &vi))
                    failed = 1;
                continue;
            }
        }
        int32_t st = 0;
        for (int64_t k = 0; k < len; k++) {
            st = p->delta[(size_t)st * C + p->cls[s[k]]];
            for (int32_t r = p->report[st]; r >= 0; r = p->next[r]) {
                for (int32_t e = p->ent_at[r]; e < p->ent_at[r + 1]; e++) {
                    const Entry *en = &p->ent[e];
                    int64_t end = k + 1, start = end - en->len;
                    int ok = en->kind == 0 || (en->kind == 1 && start == 0) ||
                             (en->kind == 2 && end == len) ||
                             (en->kind == 3 && start == 0 && end == len);
                    if (ok && stamp[en->leaf] != (int32_t)i) {
                        stamp[en->leaf] = (int32_t)i;
                        int32_t vi = (int32_t)i;
                        if (vec_push(&vals, &vi) || vec_push(&leaves, &en->leaf)) {
                            failed = 1;
                            break;
                        }
                    }
                }
            }
        }
    }
    free(stamp);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
    } else {
        res = Py_BuildValue("(y#y#y#)", vals.p ? (char *)vals.p : "", (Py_ssize_t)(vals.len * 4),
                            leaves.p ? (char *)leaves.p : "", (Py_ssize_t)(leaves.len * 4),
                            odd.p ? (char *)odd.p : "", (Py_ssize_t)(odd.len * 4));
    }
    free(vals.p);
    free(leaves.p);
    free(odd.p);
done:
    PyBuffer_Release(&offs);
    PyBuffer_Release(&data);
    if (has_valid)
        PyBuffer_Release(&valid);
    return res;
}

static PyObject *patterns_size(Patterns *p, PyObject *noargs) {
    return Py_BuildValue("(ii)", p->nstates, p->nclasses);
}

static PyMethodDef patterns_methods[] = {
    {"scan", (PyCFunction)patterns_scan, METH_VARARGS,
     "scan(n, offset, validity, offsets, data) -> (values, leaves, skipped): int32 buffers"},
    {"size", (PyCFunction)patterns_size, METH_NOARGS, "size() -> (states, byte classes)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PatternsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "threatscope._native.Patterns",
    .tp_basicsize = sizeof(Patterns),
    .tp_dealloc = (destructor)patterns_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = patterns_methods,
    .tp_doc = "A multi-pattern automaton (see patterns()).",
};

/* leaf_csr(nvalues, values, leaves) -> (offsets, ids) */
static PyObject *leaf_csr(PyObject *self, PyObject *args) {
    Py_ssize_t nv;
    Py_buffer vb, lb;
    if (!PyArg_ParseTuple(args, "ny*y*", &nv, &vb, &lb))
        return NULL;
    PyObject *res = NULL, *offs = NULL, *ids = NULL;
    Py_ssize_t m = vb.len / 4;
    const int32_t *v = vb.buf, *l = lb.buf;
    if (nv < 0 || lb.len != vb.len) {
        PyErr_SetString(PyExc_ValueError, "leaf_csr: pairs of unequal length");
        goto done;
    }
    for (Py_ssize_t k = 0; k < m; k++)
        if (v[k] < 0 || v[k] >= nv) {
            PyErr_SetString(PyExc_ValueError, "leaf_csr: value index out of range");
            goto done;
        }
    offs = PyBytes_FromStringAndSize(NULL, (nv + 1) * 4);
    ids = PyBytes_FromStringAndSize(NULL, m * 4);
    if (!offs || !ids)
        goto done;
    int32_t *o = (int32_t *)PyBytes_AS_STRING(offs), *out = (int32_t *)PyBytes_AS_STRING(ids);
    memset(o, 0, (nv + 1) * 4);
    for (Py_ssize_t k = 0; k < m; k++)
        o[v[k] + 1]++;
    for (Py_ssize_t i = 0; i < nv; i++)
        o[i + 1] += o[i];
    int32_t *fill = calloc(nv ? nv : 1, sizeof(int32_t));
    if (!fill) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < m; k++)
        out[o[v[k]] + fill[v[k]]++] = l[k];
    free(fill);
    res = Py_BuildValue("(OO)", offs, ids);
done:
    Py_XDECREF(offs);
    Py_XDECREF(ids);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&lb);
    return res;
}

/* leaf_bits(offsets, ids, nleaves, indices, ioffset, validity, null_value, start, count) */
static PyObject *leaf_bits(PyObject *self, PyObject *args) {
    Py_buffer ob, ib;
    PyObject *idx_obj, *valid_obj;
    Py_ssize_t nleaves, ioff, nullv, start, count;
    if (!PyArg_ParseTuple(args, "y*y*nOnOnnn", &ob, &ib, &nleaves, &idx_obj, &ioff, &valid_obj,
                          &nullv, &start, &count))
        return NULL;
    Py_buffer xb = {0}, vb = {0};
    int has_idx = idx_obj != Py_None, has_valid = valid_obj != Py_None;
    PyObject *res = NULL, *slots = NULL, *bits = NULL;
    int32_t *slot_of = NULL, *order = NULL;
    if (has_idx && PyObject_GetBuffer(idx_obj, &xb, PyBUF_SIMPLE)) {
        has_idx = has_valid = 0;
        goto done;
    }
    if (has_valid && PyObject_GetBuffer(valid_obj, &vb, PyBUF_SIMPLE)) {
        has_valid = 0;
        goto done;
    }
    const int32_t *o = ob.buf, *ids = ib.buf, *x = xb.buf;
    Py_ssize_t nv = ob.len / 4 - 1;
    if (nv < 0 || start < 0 || count < 0 || nleaves < 0 || nullv >= nv ||
        (has_idx && xb.len < 4 * (ioff + start + count)) ||
        (has_valid && vb.len * 8 < ioff + start + count) || (!has_idx && start + count > nv) ||
        o[nv] * 4 > ib.len) {
        PyErr_SetString(PyExc_ValueError, "leaf_bits: buffers shorter than their counts");
        goto done;
    }
    for (Py_ssize_t k = 0; k < o[nv]; k++)
        if (ids[k] < 0 || ids[k] >= nleaves) {
            PyErr_SetString(PyExc_ValueError, "leaf_bits: leaf id out of range");
            goto done;
        }
    slot_of = malloc((nleaves ? nleaves : 1) * sizeof(int32_t));
    order = malloc((nleaves ? nleaves : 1) * sizeof(int32_t));
    if (!slot_of || !order) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < nleaves; k++)
        slot_of[k] = -1;
    int32_t nslots = 0;
    int bad = 0;
#define VALUE_OF(i)                                                                           \
    (!has_idx ? (int64_t)(start + (i))                                                        \
     : (has_valid && !bit(vb.buf, ioff + start + (i))) ? (int64_t)nullv                       \
                                                        : (int64_t)x[ioff + start + (i)])
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t v = VALUE_OF(i);
        if (v < 0)
            continue;
        if (v >= nv) {
            bad = 1;
            break;
        }
        for (int32_t k = o[v]; k < o[v + 1]; k++)
            if (slot_of[ids[k]] < 0) {
                slot_of[ids[k]] = nslots;
                order[nslots++] = ids[k];
            }
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "leaf_bits: dictionary index out of range");
        goto done;
    }
    size_t nbytes = ((size_t)count + 7) / 8;
    slots = PyBytes_FromStringAndSize((const char *)order, (Py_ssize_t)nslots * 4);
    bits = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(nbytes * nslots));
    if (!slots || !bits)
        goto done;
    uint8_t *b = (uint8_t *)PyBytes_AS_STRING(bits);
    Py_BEGIN_ALLOW_THREADS
    memset(b, 0, nbytes * nslots);
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t v = VALUE_OF(i);
        if (v < 0)
            continue;
        for (int32_t k = o[v]; k < o[v + 1]; k++)
            b[(size_t)slot_of[ids[k]] * nbytes + (i >> 3)] |= (uint8_t)(1u << (i & 7));
    }
    Py_END_ALLOW_THREADS
#undef VALUE_OF
    res = Py_BuildValue("(OO)", slots, bits);
done:
    free(slot_of);
    free(order);
    Py_XDECREF(slots);
    Py_XDECREF(bits);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&ib);
    if (has_idx)
        PyBuffer_Release(&xb);
    if (has_valid)
        PyBuffer_Release(&vb);
    return res;
}

PyMethodDef pattern_functions[] = {
    {"patterns", patterns_new, METH_VARARGS,
     "patterns(entries, fold) -> Patterns; entries: (pattern bytes, kind, leaf id)"},
    {"leaf_csr", leaf_csr, METH_VARARGS, "leaf_csr(nvalues, values, leaves) -> (offsets, ids)"},
    {"leaf_bits", leaf_bits, METH_VARARGS,
     "leaf_bits(offsets, ids, nleaves, indices, ioffset, validity, null_value, start, count)"
     " -> (slots, bitmaps)"},
    {NULL, NULL, 0, NULL},
};

int patterns_ready(PyObject *module) {
    if (PyType_Ready(&PatternsType) < 0)
        return -1;
    return PyModule_AddFunctions(module, pattern_functions);
}
