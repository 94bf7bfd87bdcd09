/* threatscope._native: split log lines into typed Arrow column buffers, in one C pass.

   fields(lines, spec, date_days) -> (nlines, ok_bitmap, nrows, columns)

   `lines`: an Arrow string array as (n, offset, validity|None, int32 offsets, data), one line
   each (as reader.lines_to_batch gives them). `spec` has one code per space-separated field of
   a line:

     x  skip                       S  text as is               s  text, '-' or '' -> NULL
     p  text, '+' -> ' ', '-' -> NULL (W3C user agent)
     i  INTEGER, '-' -> NULL      l  BIGINT, '-' -> NULL
     q  "quoted text", "-" or "" -> NULL
     R  "METHOD TARGET HTTP/d[.d]" -> three text columns (method, target, version)
     A  [dd/Mon/yyyy:HH:MM:SS +hhmm] -> the timestamp
     D  yyyy-mm-dd  and  T  HH:MM:SS[.ffffff] -> the timestamp (T alone: on day `date_days`)

   A line is read only when it has exactly these fields and every value is well formed (quoted
   values hold no '"'; numbers fit; the date exists). Every other line is left to the SQL parser,
   which knows the rarer layouts and gives the quarantine reason: this path is strict so that it
   never reads a line differently. `ok_bitmap` (Arrow bit order) flags the lines read; the
   columns hold those lines only, in order, as tuples ready for pyarrow.Array.from_buffers:
   text as ("dict", validity|None, int32 indices, dictionary offsets int32, dictionary data)
   (dictionary-encoded as it is read), ("i32", validity|None, values),
   ("i64", validity|None, values), ("ts", None, int64 microseconds since 1970, UTC).

   The GIL is released while lines are read, so batches of one file split on every core.

   Also: split_lines(block), the lines of a block as Arrow binary buffers with what the reader
   checks (reader.lines_to_batch); ip_numbers(lines) and url_parts(lines) and url_parts(...) over an Arrow string array
   (arrowfn.ip_numbers, arrowfn.url_parts; the same values as the SQL macros); range_index(...),
   the binary search of IP numbers in a sorted range table (enrich). The detect stage's
   multi-pattern matching is in _patterns.c, part of this module. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { K_STR, K_I32, K_I64, K_TS, K_D128, K_DICT };

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

typedef struct {
    int kind;
    int plus_space; /* K_DICT: '+' -> ' ' in the dictionary (W3C) */
    Buf data;    /* K_STR: bytes; other kinds: fixed-width values */
    Buf offsets; /* K_STR: int32 offsets */
    Buf valid;   /* validity bits; only materialised once a NULL is seen */
    int64_t nulls;
    int64_t n;
    /* K_DICT: data/offsets hold the distinct values; idx the int32 index of each row */
    Buf idx, hashes;
    uint32_t *slots; /* open addressing: 0 empty, else value index + 1 */
    size_t cap;
    int32_t ndict;
    int32_t last; /* index of the previous row's value, -1 none: runs of one value are common */
} Col;

/* ---- pooled memory ---------------------------------------------------------------------
   A batch needs buffers of tens of MiB (its lines, its columns). Fresh memory is page-faulted
   in on first touch, which in a VM costs more than filling it; freed big blocks go back to the
   OS (or fragment the heap, as sizes vary). So blocks of at least POOL_MIN bytes are kept in a
   small pool and reused as they are: results are handed to Python as Chunk objects (below)
   that return their block to the pool when the last Arrow buffer over them is gone. Pool calls
   come with or without the GIL, hence the mutex. */
#define POOL_MIN ((size_t)1 << 20)
#define POOL_SLOTS 64
#define POOL_MAX_BYTES ((size_t)512 << 20)

static struct {
    char *p;
    size_t cap;
} pool[POOL_SLOTS];
static int pool_n;
static size_t pool_bytes;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* A block of at least `need` bytes (its size in *cap): the smallest pooled one that fits,
   else a new one. */
static char *pool_get(size_t need, size_t *cap) {
    pthread_mutex_lock(&pool_lock);
    int best = -1;
    for (int i = 0; i < pool_n; i++)
        if (pool[i].cap >= need && (best < 0 || pool[i].cap < pool[best].cap))
            best = i;
    if (best >= 0) {
        char *p = pool[best].p;
        *cap = pool[best].cap;
        pool_bytes -= *cap;
        pool[best] = pool[--pool_n];
        pthread_mutex_unlock(&pool_lock);
        return p;
    }
    pthread_mutex_unlock(&pool_lock);
    size_t c = need < POOL_MIN ? POOL_MIN : (need + POOL_MIN - 1) / POOL_MIN * POOL_MIN;
    char *p = malloc(c);
    if (p)
        *cap = c;
    return p;
}

static void pool_put(char *p, size_t cap) {
    if (!p)
        return;
    if (cap >= POOL_MIN) {
        pthread_mutex_lock(&pool_lock);
        /* full: make room by dropping smaller blocks (a big one serves any request) */
        while (pool_n && (pool_n == POOL_SLOTS || pool_bytes + cap > POOL_MAX_BYTES)) {
            int small = 0;
            for (int i = 1; i < pool_n; i++)
                if (pool[i].cap < pool[small].cap)
                    small = i;
            if (pool[small].cap >= cap)
                break;
            free(pool[small].p);
            pool_bytes -= pool[small].cap;
            pool[small] = pool[--pool_n];
        }
        if (pool_n < POOL_SLOTS && pool_bytes + cap <= POOL_MAX_BYTES) {
            pool[pool_n].p = p;
            pool[pool_n].cap = cap;
            pool_n++;
            pool_bytes += cap;
            p = NULL;
        }
        pthread_mutex_unlock(&pool_lock);
    }
    free(p);
}

static void buf_free(Buf *b) {
    pool_put(b->p, b->cap);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void col_free(Col *c) {
    buf_free(&c->data);
    buf_free(&c->offsets);
    buf_free(&c->valid);
    buf_free(&c->idx);
    buf_free(&c->hashes);
    free(c->slots);
}

static int buf_reserve(Buf *b, size_t more) {
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    if (cap < POOL_MIN) {
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
        return 0;
    }
    size_t got;
    char *p = pool_get(cap, &got);
    if (!p)
        return -1;
    if (b->len)
        memcpy(p, b->p, b->len);
    pool_put(b->p, b->cap);
    b->p = p;
    b->cap = got;
    return 0;
}

/* Chunk: read-only bytes over a block that goes back to the pool with the object. */
typedef struct {
    PyObject_HEAD
    char *p;
    size_t len, cap;
} Chunk;

static int chunk_getbuffer(PyObject *o, Py_buffer *view, int flags) {
    Chunk *c = (Chunk *)o;
    return PyBuffer_FillInfo(view, o, c->p ? c->p : (char *)"", (Py_ssize_t)c->len, 1, flags);
}

static void chunk_dealloc(PyObject *o) {
    Chunk *c = (Chunk *)o;
    pool_put(c->p, c->cap);
    Py_TYPE(o)->tp_free(o);
}

static Py_ssize_t chunk_length(PyObject *o) { return (Py_ssize_t)((Chunk *)o)->len; }

static PyBufferProcs chunk_as_buffer = {chunk_getbuffer, NULL};
static PySequenceMethods chunk_as_sequence = {.sq_length = chunk_length};

static PyTypeObject ChunkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "threatscope._native.Chunk",
    .tp_basicsize = sizeof(Chunk),
    .tp_dealloc = chunk_dealloc,
    .tp_as_sequence = &chunk_as_sequence,
    .tp_as_buffer = &chunk_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Read-only bytes in pooled memory (a buffer for pyarrow.py_buffer).",
};

/* pool_info() -> (blocks, bytes) held by the pool (tests, tuning) */
static PyObject *pool_info(PyObject *self, PyObject *args) {
    pthread_mutex_lock(&pool_lock);
    int n = pool_n;
    size_t bytes = pool_bytes;
    pthread_mutex_unlock(&pool_lock);
    return Py_BuildValue("(in)", n, (Py_ssize_t)bytes);
}

/* A Chunk of `len` bytes to fill (GIL held). */
static Chunk *chunk_new(size_t len) {
    Chunk *c = PyObject_New(Chunk, &ChunkType);
    if (!c)
        return NULL;
    c->p = pool_get(len ? len : 1, &c->cap);
    c->len = len;
    if (!c->p) {
        c->cap = 0;
        Py_DECREF(c);
        return (Chunk *)PyErr_NoMemory();
    }
    return c;
}

/* The first `len` bytes of b as a Python object, b left empty: a Chunk that takes over a big
   block (no copy), bytes for a small one. */
static PyObject *buf_take(Buf *b, size_t len) {
    if (b->cap < POOL_MIN) {
        PyObject *r = PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)len);
        return r;
    }
    Chunk *c = PyObject_New(Chunk, &ChunkType);
    if (!c)
        return NULL;
    c->p = b->p;
    c->cap = b->cap;
    c->len = len;
    b->p = NULL;
    b->len = b->cap = 0;
    return (PyObject *)c;
}

static int buf_put(Buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n))
        return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

/* Append a validity bit for row col->n (materialising the all-valid prefix on the first NULL). */
static int col_valid(Col *c, int valid) {
    if (!valid && c->nulls == 0 && c->valid.len == 0) {
        size_t need = (size_t)(c->n / 8) + 1;
        if (buf_reserve(&c->valid, need + 64))
            return -1;
        memset(c->valid.p, 0xff, need);
        c->valid.len = need;
    }
    if (c->valid.len || !valid) {
        size_t byte = (size_t)(c->n / 8);
        if (byte >= c->valid.len) {
            if (buf_reserve(&c->valid, 64))
                return -1;
            memset(c->valid.p + c->valid.len, 0xff, c->valid.cap - c->valid.len);
            c->valid.len = c->valid.cap;
        }
        if (!valid)
            c->valid.p[byte] &= (char)~(1u << (c->n % 8));
    }
    if (!valid)
        c->nulls++;
    c->n++;
    return 0;
}

/* Seeded per process: log values are attacker-controlled, so collisions must not be craftable. */
static uint64_t hash_seed;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = hash_seed ^ (n * 0x9E3779B97F4A7C15ULL);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0x94d049bb133111ebULL;
    return h ^ (h >> 29);
}

static int dict_grow(Col *c) {
    size_t cap = c->cap ? c->cap * 2 : 1024;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    const uint64_t *hs = (const uint64_t *)c->hashes.p;
    for (int32_t k = 0; k < c->ndict; k++) {
        size_t i = hs[k] & (cap - 1);
        while (slots[i])
            i = (i + 1) & (cap - 1);
        slots[i] = (uint32_t)k + 1;
    }
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    return 0;
}

/* Append row value s (a new dictionary entry if unseen). plus_space is applied to the
   dictionary once at the end (see column_tuple): the values hold no space (the field
   separator), so '+' -> ' ' keeps distinct values distinct. */
static int col_dict(Col *c, const char *s, size_t n, int valid) {
    int32_t k = 0;
    const int32_t *off = (const int32_t *)c->offsets.p;
    if (valid && c->ndict && c->last >= 0 && (size_t)(off[c->last + 1] - off[c->last]) == n &&
        memcmp(c->data.p + off[c->last], s, n) == 0) {
        k = c->last;
    } else if (valid) {
        if ((size_t)(c->ndict + 1) * 2 > c->cap && dict_grow(c))
            return -1;
        uint64_t h = hash_bytes(s, n);
        size_t i = h & (c->cap - 1);
        for (;;) {
            uint32_t e = c->slots[i];
            if (!e) {
                k = c->ndict;
                if (c->offsets.len == 0) {
                    int32_t z = 0;
                    if (buf_put(&c->offsets, &z, 4))
                        return -1;
                }
                if (buf_put(&c->data, s, n) || c->data.len > INT32_MAX)
                    return -1;
                int32_t end = (int32_t)c->data.len;
                if (buf_put(&c->offsets, &end, 4) || buf_put(&c->hashes, &h, 8))
                    return -1;
                c->slots[i] = (uint32_t)k + 1;
                c->ndict++;
                break;
            }
            k = (int32_t)e - 1;
            if (((const uint64_t *)c->hashes.p)[k] == h && (size_t)(off[k + 1] - off[k]) == n &&
                memcmp(c->data.p + off[k], s, n) == 0)
                break;
            i = (i + 1) & (c->cap - 1);
        }
        c->last = k;
    }
    if (buf_put(&c->idx, &k, 4))
        return -1;
    return col_valid(c, valid);
}

static int col_str(Col *c, const char *s, size_t n, int valid) {
    if (c->kind == K_DICT)
        return col_dict(c, s, n, valid);
    if (c->offsets.len == 0) {
        int32_t z = 0;
        if (buf_put(&c->offsets, &z, 4))
            return -1;
    }
    if (valid && buf_put(&c->data, s, n))
        return -1;
    if (c->data.len > INT32_MAX)
        return -1;
    int32_t end = (int32_t)c->data.len;
    if (buf_put(&c->offsets, &end, 4))
        return -1;
    return col_valid(c, valid);
}

static int col_fixed(Col *c, const void *v, size_t width, int valid) {
    if (buf_put(&c->data, v, width))
        return -1;
    return col_valid(c, valid);
}

/* ---- value parsers: return 1 when the text is well formed ---------------------------- */
static int is_dash(const char *s, size_t n) { return n == 0 || (n == 1 && s[0] == '-'); }

static int parse_uint(const char *s, size_t n, int64_t max, int64_t *out) {
    if (n == 0 || n > 19)
        return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        int d = s[i] - '0';
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

static int digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil) */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int valid_date(int y, int m, int d) {
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || m < 1 || m > 12 || d < 1)
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= mdays[m - 1] + (m == 2 && leap);
}

static int month_of(const char *s) {
    static const char *names = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (memcmp(names + 3 * i, s, 3) == 0)
            return i + 1;
    return 0;
}

/* HH:MM:SS -> seconds of the day */
static int hms(const char *s, int *out) {
    int h, m, sec;
    if (s[2] != ':' || s[5] != ':' || !digits(s, 2, &h) || !digits(s + 3, 2, &m) ||
        !digits(s + 6, 2, &sec) || h > 23 || m > 59 || sec > 59)
        return 0;
    *out = h * 3600 + m * 60 + sec;
    return 1;
}

/* [dd/Mon/yyyy:HH:MM:SS +hhmm] */
static int apache_time(const char *s, size_t n, int64_t *us) {
    int d, y, secs, zh, zm;
    if (n != 28 || s[0] != '[' || s[27] != ']' || s[3] != '/' || s[7] != '/' || s[12] != ':' ||
        s[21] != ' ' || (s[22] != '+' && s[22] != '-'))
        return 0;
    int m = month_of(s + 4);
    if (!m || !digits(s + 1, 2, &d) || !digits(s + 8, 4, &y) || !hms(s + 13, &secs) ||
        !digits(s + 23, 2, &zh) || !digits(s + 25, 2, &zm) || !valid_date(y, m, d))
        return 0;
    int64_t zone = (int64_t)(zh * 60 + zm) * 60 * (s[22] == '-' ? -1 : 1);
    *us = ((days_from_civil(y, m, d) * 86400 + secs) - zone) * 1000000;
    return 1;
}

/* yyyy-mm-dd -> days */
static int iso_date(const char *s, size_t n, int64_t *days) {
    int y, m, d;
    if (n != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4, &y) || !digits(s + 5, 2, &m) ||
        !digits(s + 8, 2, &d) || !valid_date(y, m, d))
        return 0;
    *days = days_from_civil(y, m, d);
    return 1;
}

/* HH:MM:SS[.f{1,6}] -> microseconds of the day */
static int iso_time(const char *s, size_t n, int64_t *us) {
    int secs;
    if (n < 8 || !hms(s, &secs))
        return 0;
    int64_t frac = 0;
    if (n > 8) {
        if (s[8] != '.' || n == 9 || n > 15)
            return 0;
        int f;
        if (!digits(s + 9, (int)(n - 9), &f))
            return 0;
        frac = f;
        for (size_t k = n - 9; k < 6; k++)
            frac *= 10;
    }
    *us = (int64_t)secs * 1000000 + frac;
    return 1;
}

/* "METHOD TARGET HTTP/d[.d]": the method is a token, the target has no space */
static int request(const char *s, size_t n, size_t *m_end, size_t *v_start) {
    const char *sp1 = memchr(s, ' ', n);
    if (!sp1 || sp1 == s)
        return 0;
    size_t a = (size_t)(sp1 - s);
    const char *sp2 = memchr(sp1 + 1, ' ', n - a - 1);
    if (!sp2 || sp2 == sp1 + 1)
        return 0;
    size_t b = (size_t)(sp2 - s) + 1;
    if (memchr(s + b, ' ', n - b))
        return 0;
    const char *v = s + b;
    size_t vn = n - b;
    if (!((vn == 6 || (vn == 8 && v[6] == '.' && v[7] >= '0' && v[7] <= '9')) &&
          memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9'))
        return 0;
    *m_end = a;
    *v_start = b;
    return 1;
}

/* ---- the line loop ------------------------------------------------------------------- */
#define MAXF 256

typedef struct {
    const char *s;
    size_t n;
} Tok;

/* Split a line into nf tokens by the spec's shape; 0 when it does not have that shape. */
static int tokenize(const char *s, size_t n, const char *spec, int nf, int quoted, Tok *tok) {
    size_t i = 0;
    for (int f = 0; f < nf; f++) {
        if (f > 0) {
            if (i >= n || s[i] != ' ')
                return 0;
            i++;
        }
        char code = spec[f];
        if (code == 'q' || code == 'R') {
            if (i >= n || s[i] != '"')
                return 0;
            const char *close = memchr(s + i + 1, '"', n - i - 1);
            if (!close)
                return 0;
            size_t e = (size_t)(close - s);
            tok[f].s = s + i + 1;
            tok[f].n = e - i - 1;
            i = e + 1;
            if (i < n && s[i] != ' ')
                return 0;
        } else if (code == 'A') {
            if (n - i < 28)
                return 0;
            tok[f].s = s + i;
            tok[f].n = 28;
            i += 28;
        } else {
            /* glibc's memchr is vectorised: far faster than a byte loop on long values */
            const char *sp = memchr(s + i, ' ', n - i);
            size_t j = sp ? (size_t)(sp - s) : n;
            if (quoted && memchr(s + i, '"', j - i))
                return 0;
            tok[f].s = s + i;
            tok[f].n = j - i;
            i = j;
        }
    }
    return i == n;
}

typedef struct {
    const char *spec;
    int nf;
    int64_t date_days; /* for T without D; < -10^8: none */
    Col *cols;
    int ncols;
    int first_col[MAXF]; /* per field: index of its first column */
    int ts_col;          /* -1 when the spec has no time */
    int quoted;          /* the spec has quoted fields: a '"' elsewhere is left to SQL */
    int iso_time;        /* the spec has D or T: the time is D + T */
} Plan;

/* Read one line; 1 when it was read (columns appended), 0 when left to the SQL parser, -1 on
   memory failure. Values are checked before anything is appended, so a rejected line leaves
   the columns untouched. */
static int read_line(Plan *pl, const char *s, size_t n) {
    Tok tok[MAXF];
    if (!tokenize(s, n, pl->spec, pl->nf, pl->quoted, tok))
        return 0;
    int64_t ints[MAXF];
    size_t req[MAXF][2];
    int64_t ts = 0, date = pl->date_days, tod = -1;
    int have_date = date > -100000000;
    for (int f = 0; f < pl->nf; f++) {
        const char *v = tok[f].s;
        size_t vn = tok[f].n;
        switch (pl->spec[f]) {
        case 'i':
            if (!is_dash(v, vn) && !parse_uint(v, vn, INT32_MAX, &ints[f]))
                return 0;
            break;
        case 'l':
            if (!is_dash(v, vn) && !parse_uint(v, vn, INT64_MAX, &ints[f]))
                return 0;
            break;
        case 'R':
            if (!request(v, vn, &req[f][0], &req[f][1]))
                return 0;
            break;
        case 'A':
            if (!apache_time(v, vn, &ts))
                return 0;
            break;
        case 'D':
            if (!iso_date(v, vn, &date))
                return 0;
            have_date = 1;
            break;
        case 'T':
            if (!iso_time(v, vn, &tod))
                return 0;
            break;
        }
    }
    if (pl->iso_time) {
        if (tod < 0 || !have_date)
            return 0;
        ts = date * 86400LL * 1000000LL + tod;
    }
    for (int f = 0; f < pl->nf; f++) {
        const char *v = tok[f].s;
        size_t vn = tok[f].n;
        Col *c = &pl->cols[pl->first_col[f]];
        int dash = is_dash(v, vn);
        switch (pl->spec[f]) {
        case 'S':
            if (col_str(c, v, vn, 1)) return -1;
            break;
        case 's': case 'p': case 'q':
            if (col_str(c, v, vn, !dash)) return -1;
            break;
        case 'i': {
            int32_t x = dash ? 0 : (int32_t)ints[f];
            if (col_fixed(c, &x, 4, !dash)) return -1;
            break;
        }
        case 'l': {
            int64_t x = dash ? 0 : ints[f];
            if (col_fixed(c, &x, 8, !dash)) return -1;
            break;
        }
        case 'R':
            if (col_str(c, v, req[f][0], 1) ||
                col_str(c + 1, v + req[f][0] + 1, req[f][1] - req[f][0] - 2, 1) ||
                col_str(c + 2, v + req[f][1], vn - req[f][1], 1))
                return -1;
            break;
        }
    }
    if (pl->ts_col >= 0 && col_fixed(&pl->cols[pl->ts_col], &ts, 8, 1))
        return -1;
    return 1;
}


static PyObject *column_tuple(Col *c) {
    static const char *kinds[] = {"str", "i32", "i64", "ts", "d128", "dict"};
    PyObject *valid = c->nulls ? buf_take(&c->valid, (size_t)(c->n + 7) / 8) : Py_NewRef(Py_None);
    if (!valid)
        return NULL;
    if (c->kind == K_STR || c->kind == K_DICT) {
        if (c->offsets.len == 0) {
            int32_t z = 0;
            if (buf_put(&c->offsets, &z, 4)) {
                Py_DECREF(valid);
                return PyErr_NoMemory();
            }
        }
        if (c->kind == K_DICT && c->plus_space)
            for (size_t i = 0; i < c->data.len; i++)
                if (c->data.p[i] == '+')
                    c->data.p[i] = ' ';
        if (c->kind == K_DICT)
            return Py_BuildValue("(sNNNN)", kinds[c->kind], valid, buf_take(&c->idx, c->idx.len),
                                 buf_take(&c->offsets, c->offsets.len),
                                 buf_take(&c->data, c->data.len));
        return Py_BuildValue("(sNNN)", kinds[c->kind], valid, buf_take(&c->offsets, c->offsets.len),
                             buf_take(&c->data, c->data.len));
    }
    return Py_BuildValue("(sNN)", kinds[c->kind], valid, buf_take(&c->data, c->data.len));
}

/* ---- Arrow string arrays in: (n, offset, validity|None, int32 offsets, data) ----------- */
typedef struct {
    Py_buffer validity, offsets, data;
    int has_validity;
    Py_ssize_t n, offset;
} StrIn;

static int str_in(PyObject *args, StrIn *in) {
    PyObject *validity;
    memset(in, 0, sizeof *in);
    if (!PyArg_ParseTuple(args, "nnOy*y*", &in->n, &in->offset, &validity, &in->offsets,
                          &in->data))
        return -1;
    if (validity != Py_None) {
        if (PyObject_GetBuffer(validity, &in->validity, PyBUF_SIMPLE)) {
            PyBuffer_Release(&in->offsets);
            PyBuffer_Release(&in->data);
            return -1;
        }
        in->has_validity = 1;
    }
    if (in->offsets.len < (Py_ssize_t)sizeof(int32_t) * (in->offset + in->n + 1)) {
        PyErr_SetString(PyExc_ValueError, "offsets buffer too short");
        return -1;
    }
    return 0;
}

static void str_release(StrIn *in) {
    if (in->has_validity)
        PyBuffer_Release(&in->validity);
    PyBuffer_Release(&in->offsets);
    PyBuffer_Release(&in->data);
}

static int str_get(StrIn *in, Py_ssize_t i, const char **s, size_t *n) {
    Py_ssize_t k = in->offset + i;
    if (in->has_validity && !((((const unsigned char *)in->validity.buf)[k / 8] >> (k % 8)) & 1))
        return 0;
    const int32_t *o = in->offsets.buf;
    *s = (const char *)in->data.buf + o[k];
    *n = (size_t)(o[k + 1] - o[k]);
    return 1;
}

static PyObject *fields(PyObject *self, PyObject *args) {
    StrIn in;
    const char *spec;
    Py_ssize_t nf;
    long long date_days = -1000000000LL;
    PyObject *lines;
    if (!PyArg_ParseTuple(args, "Os#|L", &lines, &spec, &nf, &date_days))
        return NULL;
    if (!PyTuple_Check(lines)) {
        PyErr_SetString(PyExc_TypeError, "fields: lines must be (n, offset, validity, offsets, data)");
        return NULL;
    }
    if (str_in(lines, &in))
        return NULL;
    PyObject *result = NULL;
    Plan pl;
    memset(&pl, 0, sizeof pl);
    pl.spec = spec;
    pl.nf = (int)nf;
    pl.date_days = date_days;
    pl.ts_col = -1;
    if (nf < 1 || nf > MAXF) {
        PyErr_SetString(PyExc_ValueError, "spec: 1 to 256 fields");
        str_release(&in);
        return NULL;
    }
    int ncols = 0, has_time = 0;
    for (int f = 0; f < nf; f++) {
        if (!strchr("xSspilqRADT", spec[f])) {
            PyErr_Format(PyExc_ValueError, "spec: unknown field code %c", spec[f]);
            str_release(&in);
            return NULL;
        }
        pl.first_col[f] = ncols;
        ncols += spec[f] == 'R' ? 3 : strchr("Sspilq", spec[f]) ? 1 : 0;
        has_time |= spec[f] == 'A' || spec[f] == 'D' || spec[f] == 'T';
        pl.quoted |= spec[f] == 'q' || spec[f] == 'R';
        pl.iso_time |= spec[f] == 'D' || spec[f] == 'T';
    }
    if (has_time)
        pl.ts_col = ncols++;
    pl.ncols = ncols;
    pl.cols = calloc((size_t)(ncols ? ncols : 1), sizeof(Col));
    size_t nlines = 0;
    Buf ok = {0};
    int failed = 0;
    if (!pl.cols) {
        str_release(&in);
        return PyErr_NoMemory();
    }
    for (int f = 0; f < nf; f++) {
        Col *c = &pl.cols[pl.first_col[f]];
        switch (spec[f]) {
        case 'S': c->kind = K_DICT; break;
        case 's': case 'q': c->kind = K_DICT; break;
        case 'p': c->kind = K_DICT; c->plus_space = 1; break;
        case 'i': c->kind = K_I32; break;
        case 'l': c->kind = K_I64; break;
        case 'R': c[0].kind = c[1].kind = c[2].kind = K_DICT; break;
        }
    }
    if (pl.ts_col >= 0)
        pl.cols[pl.ts_col].kind = K_TS;

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < in.n; i++) {
        const char *line;
        size_t ln;
        if (nlines % 8 == 0) {
            char z = 0;
            if (buf_put(&ok, &z, 1)) {
                failed = 1;
                break;
            }
        }
        int r = str_get(&in, i, &line, &ln) ? read_line(&pl, line, ln) : 0;
        if (r < 0) {
            failed = 1;
            break;
        }
        if (r)
            ok.p[nlines / 8] |= (char)(1u << (nlines % 8));
        nlines++;
    }
    Py_END_ALLOW_THREADS

    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t rows = 0;
    for (size_t i = 0; i < ok.len; i++)
        rows += __builtin_popcount((unsigned char)ok.p[i]);
    PyObject *cols = PyList_New(ncols);
    if (!cols)
        goto done;
    for (int k = 0; k < ncols; k++) {
        PyObject *t = column_tuple(&pl.cols[k]);
        if (!t) {
            Py_DECREF(cols);
            goto done;
        }
        PyList_SET_ITEM(cols, k, t);
    }
    result = Py_BuildValue("(nNLN)", (Py_ssize_t)nlines, buf_take(&ok, ok.len), (long long)rows,
                           cols);
done:
    for (int k = 0; k < ncols; k++)
        col_free(&pl.cols[k]);
    free(pl.cols);
    buf_free(&ok);
    str_release(&in);
    return result;
}

/* ---- derived columns: IP numbers and URL parts, over an Arrow string array ------------- */
typedef unsigned __int128 u128;

/* a.b.c.d, decimal octets without leading zeros (ipnum._V4_RE) */
static int ipv4(const char *s, size_t n, uint32_t *out) {
    uint32_t v = 0;
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        if (k && (i >= n || s[i++] != '.'))
            return 0;
        size_t j = i;
        int o = 0;
        while (j < n && j - i < 3 && s[j] >= '0' && s[j] <= '9')
            o = o * 10 + (s[j++] - '0');
        if (j == i || (j - i > 1 && s[i] == '0') || o > 255)
            return 0;
        v = v << 8 | (uint32_t)o;
        i = j;
    }
    if (i != n)
        return 0;
    *out = v;
    return 1;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* groups "g:g:..." (1-4 hex digits each) of w[0..n); -1 when malformed */
static int v6_groups(const char *w, size_t n, uint16_t *g, int max) {
    if (n == 0)
        return 0;
    int k = 0;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        unsigned v = 0;
        while (j < n && w[j] != ':') {
            int h = hexval(w[j]);
            if (h < 0 || j - i >= 4)
                return -1;
            v = v << 4 | (unsigned)h;
            j++;
        }
        if (j == i || k == max)
            return -1;
        g[k++] = (uint16_t)v;
        if (j == n)
            return k;
        i = j + 1;
    }
}

/* ipnum.ts_ip6_num: lower case, zone dropped, dotted-quad tail, '::' */
static int ipv6(const char *t, size_t n, u128 *out) {
    const char *pct = memchr(t, '%', n);
    if (pct)
        n = (size_t)(pct - t);
    char w[64];
    if (n > 48)
        return 0;
    for (size_t i = 0; i < n; i++)
        w[i] = (t[i] >= 'A' && t[i] <= 'Z') ? (char)(t[i] + 32) : t[i];
    if (memchr(w, '.', n)) {
        size_t c = n;
        while (c > 0 && w[c - 1] != ':')
            c--;
        uint32_t v4;
        if (!ipv4(w + c, n - c, &v4))
            return 0;
        n = c + (size_t)snprintf(w + c, sizeof w - c, "%x:%x", v4 >> 16, v4 & 0xffff);
    }
    if (n < 2 || n > 39)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((w[i] >= '0' && w[i] <= '9') || (w[i] >= 'a' && w[i] <= 'f') || w[i] == ':'))
            return 0;
    const char *dc = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        if (w[i] == ':' && w[i + 1] == ':') {
            if (dc || (i + 2 < n && w[i + 2] == ':'))
                return 0; /* two '::' or ':::' */
            dc = w + i;
            i++;
        }
    }
    uint16_t g[8], r[8];
    int nl, nr = 0;
    if (dc) {
        nl = v6_groups(w, (size_t)(dc - w), g, 8);
        nr = v6_groups(dc + 2, n - (size_t)(dc - w) - 2, r, 8);
        if (nl < 0 || nr < 0 || nl + nr > 8)
            return 0;
        for (int k = nl; k < 8 - nr; k++)
            g[k] = 0;
        for (int k = 0; k < nr; k++)
            g[8 - nr + k] = r[k];
    } else if (v6_groups(w, n, g, 8) != 8) {
        return 0;
    }
    u128 v = 0;
    for (int k = 0; k < 8; k++)
        v = v << 16 | g[k];
    *out = v;
    return 1;
}

/* ipnum.ts_ip_num, as DECIMAL(38,0): NULL for text that is no address and for numbers of 39
   digits (fe80::/10 and above) */
static int ip_number(const char *s, size_t n, u128 *out) {
    int colon = memchr(s, ':', n) != NULL;
    if (colon || memchr(s, ' ', n)) {
        while (n && s[0] == ' ')
            s++, n--;
        while (n && s[n - 1] == ' ')
            n--;
    }
    if (colon) {
        if (!ipv6(s, n, out))
            return 0;
    } else {
        uint32_t v4;
        if (!ipv4(s, n, &v4))
            return 0;
        *out = (u128)0xFFFF00000000ULL + v4;
    }
    static const u128 e38 = ((u128)0x4B3B4CA85A86C47AULL << 64) | 0x098A224000000000ULL;
    return *out < e38;
}

/* ip_numbers(n, offset, validity, offsets, data) -> ("d128", validity|None, 16-byte values) */
static PyObject *ip_numbers(PyObject *self, PyObject *args) {
    StrIn in;
    if (str_in(args, &in))
        return NULL;
    Col c;
    memset(&c, 0, sizeof c);
    c.kind = K_D128;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < in.n && !failed; i++) {
        const char *s;
        size_t len;
        u128 v = 0;
        int ok = str_get(&in, i, &s, &len) && ip_number(s, len, &v);
        if (!ok)
            v = 0;
        failed = col_fixed(&c, &v, 16, ok) != 0;
    }
    Py_END_ALLOW_THREADS
    str_release(&in);
    PyObject *res = failed ? PyErr_NoMemory() : column_tuple(&c);
    col_free(&c);
    return res;
}

static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) k = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) k = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) k = 3, cp = c & 0x07;
        else return 0;
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* %XX decoded (XX two hex digits; only 00-7F when `ascii`), everything else as is */
static int url_decode_into(Buf *b, const char *s, size_t n, int ascii) {
    if (buf_reserve(b, n))
        return -1;
    char *d = b->p + b->len;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexval(s[i + 1])) >= 0 && (l = hexval(s[i + 2])) >= 0 && (!ascii || h < 8)) {
            d[o++] = (char)(h << 4 | l);
            i += 2;
        } else {
            d[o++] = s[i];
        }
    }
    return (int)o;
}

/* url_parts(n, offset, validity, offsets, data) -> (path, query, decoded) as sqlfn's
   ts_url_path, ts_url_query and ts_url_decode give them, each as a "dict" column */
static PyObject *url_parts(PyObject *self, PyObject *args) {
    StrIn in;
    if (str_in(args, &in))
        return NULL;
    Col c[3];
    memset(c, 0, sizeof c);
    /* dictionary-encoded: URLs share paths and queries, and a dictionary without repeats is
       what the Parquet writer and detect's per-value phase want */
    for (int k = 0; k < 3; k++)
        c[k].kind = K_DICT;
    Buf dec = {0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < in.n && !failed; i++) {
        const char *s = "";
        size_t len = 0;
        int valid = str_get(&in, i, &s, &len);
        const char *q = valid ? memchr(s, '?', len) : NULL;
        size_t plen = q ? (size_t)(q - s) : len;
        failed |= col_str(&c[0], s, plen, valid) != 0;
        failed |= col_str(&c[1], q ? q + 1 : "", q ? len - plen - 1 : 0, q != NULL) != 0;
        if (!valid || !memchr(s, '%', len)) {
            failed |= col_str(&c[2], s, len, valid) != 0;
            continue;
        }
        for (int ascii = 0; ascii < 2 && !failed; ascii++) {
            dec.len = 0;
            int got = url_decode_into(&dec, s, len, ascii);
            if (got < 0) {
                failed = 1;
            } else if (ascii || utf8_valid((unsigned char *)dec.p, (size_t)got)) {
                failed |= col_str(&c[2], dec.p, (size_t)got, 1) != 0;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    str_release(&in);
    free(dec.p);
    PyObject *res = NULL;
    if (failed)
        PyErr_NoMemory();
    else
        res = Py_BuildValue("(NNN)", column_tuple(&c[0]), column_tuple(&c[1]), column_tuple(&c[2]));
    for (int k = 0; k < 3; k++)
        col_free(&c[k]);
    return res;
}

/* ---- line splitting: a block of lines -> an Arrow binary array ------------------------- */
/* split_lines(block) -> (nlines, offsets, data, blank, max_len, utf8_ok)

   The lines of `block` ('\n' separated; one '\r' before it dropped; the text after the last
   '\n' is the last line, so an empty block is one empty line) as the int32 offsets and data of
   an Arrow binary array, with what the reader checks: how many are empty, the longest, whether
   the whole block is valid UTF-8. The GIL is released while the block is read. */
static PyObject *split_lines(PyObject *self, PyObject *args) {
    Py_buffer block;
    if (!PyArg_ParseTuple(args, "y*", &block))
        return NULL;
    const unsigned char *s = block.buf;
    size_t len = (size_t)block.len;
    if (len > INT32_MAX) {
        PyBuffer_Release(&block);
        PyErr_SetString(PyExc_ValueError, "block over 2 GiB");
        return NULL;
    }
    /* data: at most the block's bytes; offsets: grown as lines are found (one pass) */
    Chunk *data = chunk_new(len);
    if (!data) {
        PyBuffer_Release(&block);
        return NULL;
    }
    char *out = data->p;
    Buf off = {0};
    size_t nlines = 0, blank = 0, max_len = 0, o = 0, pos = 0;
    uint64_t high = 0;
    int failed = 0, utf8 = 1;
    Py_BEGIN_ALLOW_THREADS
    int32_t zero = 0;
    failed = buf_put(&off, &zero, 4);
    while (!failed) {
        const unsigned char *nl = memchr(s + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - s) : len;
        size_t n = end - pos;
        const unsigned char *line = s + pos;
        memcpy(out + o, line, n);
        /* while the line is in cache: non-ASCII bytes, CRs other than the one ending it */
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, line + i, 8);
            high |= w;
        }
        for (; i < n; i++)
            high |= line[i];
        if (n && line[n - 1] == '\r')
            n--;
        o += n;
        int32_t end32 = (int32_t)o;
        failed = buf_put(&off, &end32, 4);
        nlines++;
        blank += n == 0;
        if (n > max_len)
            max_len = n;
        if (!nl)
            break;
        pos = end + 1;
    }
    /* '\n' and '\r' are never inside a multi-byte sequence: the block's validity is the lines' */
    utf8 = failed || !(high & 0x8080808080808080ULL) || utf8_valid(s, len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&block);
    if (failed) {
        buf_free(&off);
        Py_DECREF(data);
        return PyErr_NoMemory();
    }
    data->len = o;
    PyObject *offsets = buf_take(&off, off.len);
    buf_free(&off);
    if (!offsets) {
        Py_DECREF(data);
        return NULL;
    }
    return Py_BuildValue("(nNNnni)", (Py_ssize_t)nlines, offsets, data, (Py_ssize_t)blank,
                         (Py_ssize_t)max_len, utf8);
}

/* range_index(n, first_hi, first_lo, last_hi, last_lo, m, q_hi, q_lo, q_valid) -> (validity, int32)

   The row of a range table of n rows (bounds as 128-bit numbers split into uint64 halves, rows
   sorted by first bound and not overlapping) that holds each of m query numbers: the last row
   whose first bound is <= q, if its last bound is >= q; NULL when none does or the query is
   NULL (q_valid: Arrow validity bitmap or None). All buffers start at element 0. */
static PyObject *range_index(PyObject *self, PyObject *args) {
    Py_buffer b[6];
    PyObject *qvalid_obj, *valid = NULL, *idx = NULL, *res = NULL;
    Py_buffer qvalid = {0};
    Py_ssize_t n, m;
    if (!PyArg_ParseTuple(args, "ny*y*y*y*ny*y*O", &n, &b[0], &b[1], &b[2], &b[3], &m, &b[4],
                          &b[5], &qvalid_obj))
        return NULL;
    int has_qvalid = 0;
    if (qvalid_obj != Py_None) {
        if (PyObject_GetBuffer(qvalid_obj, &qvalid, PyBUF_SIMPLE))
            goto done;
        has_qvalid = 1;
    }
    int short_buf = n < 0 || m < 0 || n > INT32_MAX || (has_qvalid && qvalid.len < (m + 7) / 8);
    for (int k = 0; k < 6; k++)
        short_buf |= b[k].len < 8 * (k < 4 ? n : m);
    if (short_buf) {
        PyErr_SetString(PyExc_ValueError, "range_index: buffer shorter than its count");
        goto done;
    }
    valid = PyBytes_FromStringAndSize(NULL, (m + 7) / 8);
    idx = PyBytes_FromStringAndSize(NULL, m * 4);
    if (!valid || !idx)
        goto done;
    const uint64_t *fh = b[0].buf, *fl = b[1].buf, *lh = b[2].buf, *ll = b[3].buf;
    const uint64_t *qh = b[4].buf, *ql = b[5].buf;
    const unsigned char *qv = qvalid.buf;
    unsigned char *vout = (unsigned char *)PyBytes_AS_STRING(valid);
    int32_t *out = (int32_t *)PyBytes_AS_STRING(idx);
    Py_BEGIN_ALLOW_THREADS
    memset(vout, 0, (size_t)(m + 7) / 8);
    for (Py_ssize_t i = 0; i < m; i++) {
        out[i] = 0;
        if (has_qvalid && !((qv[i / 8] >> (i % 8)) & 1))
            continue;
        u128 q = ((u128)qh[i] << 64) | ql[i];
        Py_ssize_t lo = 0, hi = n; /* first row with first bound > q */
        while (lo < hi) {
            Py_ssize_t mid = lo + (hi - lo) / 2;
            if ((((u128)fh[mid] << 64) | fl[mid]) <= q)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo > 0 && (((u128)lh[lo - 1] << 64) | ll[lo - 1]) >= q) {
            out[i] = (int32_t)(lo - 1);
            vout[i / 8] |= (unsigned char)(1u << (i % 8));
        }
    }
    Py_END_ALLOW_THREADS
    res = Py_BuildValue("(OO)", valid, idx);
done:
    Py_XDECREF(valid);
    Py_XDECREF(idx);
    for (int k = 0; k < 6; k++)
        PyBuffer_Release(&b[k]);
    if (has_qvalid)
        PyBuffer_Release(&qvalid);
    return res;
}

/* ---- PowerShell tokenizer (threatscope.powershell.tokenize) --------------------------------
   ps_tokens(text, token_type, kinds, skip_comments, deadline, clock) -> list of tokens: the
   same tokens as tokenize.py's _FAST regex scan (which stays as the pure-Python path), 15-30x
   faster. Each rule below follows the regex alternative of the same name, in the same order,
   with its exact backtracking outcome (commented where it is not obvious); character classes use
   the same Unicode predicates as the re module (\s, \w, \d, IGNORECASE). tests/powershell/
   test_native_tokenize.py compares both paths. */

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t n;
    /* ps_type's last bracket run: [from, to) holds only the inner class's characters and
       `last` is its last ']' followed by \s* and ']' (-1: none), so that a run is read once
       however many '[' start in it (the regex reads it again each time: quadratic) */
    Py_ssize_t run_from, run_to, run_last;
} PsText;

#define PS_EOT 0xFFFFFFFFu /* past the end: no predicate below accepts it */

static inline Py_UCS4 ps_at(const PsText *s, Py_ssize_t i) {
    return i < s->n ? PyUnicode_READ(s->kind, s->data, i) : PS_EOT;
}

enum { K_NEWLINE, K_WORD, K_COMMENT, K_HERESTRING, K_STRING, K_SUBEXPR, K_VARIABLE, K_ARRAYEXPR,
       K_HASHTABLE, K_SPLAT, K_TYPE, K_NUMBER, K_OPERATOR, K_PARAMETER, K_DOT, K_LPAREN, K_RPAREN,
       K_LBRACE, K_RBRACE, K_LBRACKET, K_RBRACKET, K_COMMA, K_SEMICOLON, K_PIPE, K_AMP, K_UNKNOWN,
       K_COUNT };

/* ASCII answers of the predicates below, made from them by ps_init (a table load instead of
   the Unicode database's several calls for the common characters) */
enum { PS_S = 1, PS_W = 2, PS_D = 4, PS_WORDCH = 8 };
static unsigned char ps_ascii[128];

static inline int ps_s(Py_UCS4 c) {
    return c < 128 ? ps_ascii[c] & PS_S : c <= 0x10FFFF && Py_UNICODE_ISSPACE(c);
}
static inline int ps_w(Py_UCS4 c) {
    return c < 128 ? ps_ascii[c] & PS_W : c <= 0x10FFFF && Py_UNICODE_ISALNUM(c);
}
static inline int ps_d(Py_UCS4 c) {
    return c < 128 ? ps_ascii[c] & PS_D : c <= 0x10FFFF && Py_UNICODE_ISDECIMAL(c);
}
static inline int ps_alpha_(Py_UCS4 c) { return (c | 0x20) - 'a' < 26u || c == '_'; }
static inline int ps_ws0(Py_UCS4 c) {
    return c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == 0xA0 || c == 0xFEFF;
}
static inline int ps_q1(Py_UCS4 c) { return c == '\'' || (c >= 0x2018 && c <= 0x201B); }
static inline int ps_q2(Py_UCS4 c) { return c == '"' || (c >= 0x201C && c <= 0x201E); }
static inline int ps_dash(Py_UCS4 c) { return c == '-' || (c >= 0x2013 && c <= 0x2015); }
static inline int ps_adigit(Py_UCS4 c) { return c - '0' < 10u; }
static inline int ps_hex(Py_UCS4 c) { return ps_adigit(c) || (c | 0x20) - 'a' < 6u; }

/* IGNORECASE as re applies it to an ASCII letter of a pattern: ASCII case, plus the four
   non-ASCII characters that match one (U+0130/U+0131 ~ i, U+017F ~ s, U+212A ~ k) */
static inline Py_UCS4 ps_fold(Py_UCS4 c) {
    if (c - 'A' < 26u)
        return c | 0x20;
    if (c == 0x130 || c == 0x131)
        return 'i';
    if (c == 0x17F)
        return 's';
    if (c == 0x212A)
        return 'k';
    return c;
}

/* _WORDCH: not \s and none of (){}[];,|&'"`$@#<>=+*\/%! and the curly quotes */
static inline int ps_wordch(Py_UCS4 c) {
    if (c < 128)
        return ps_ascii[c] & PS_WORDCH;
    if (c >= 0x2018 && c <= 0x201E)
        return 0;
    return !ps_s(c);
}

static void ps_init(void) {
    for (Py_UCS4 c = 0; c < 128; c++) {
        int space = Py_UNICODE_ISSPACE(c);
        int wordch = c <= ' ' ? !(c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F))
                              : strchr("(){}[];,|&'\"`$@#<>=+*/%!", (int)c) == NULL;
        ps_ascii[c] = (unsigned char)((space ? PS_S : 0) | (c == '_' || Py_UNICODE_ISALNUM(c) ? PS_W : 0)
                                      | (Py_UNICODE_ISDECIMAL(c) ? PS_D : 0) | (wordch ? PS_WORDCH : 0));
    }
}

/* (?:_WORDCH+|`[\s\S])* from i */
static Py_ssize_t ps_word_tail(const PsText *s, Py_ssize_t i) {
    for (;;) {
        Py_UCS4 c = ps_at(s, i);
        if (c == PS_EOT)
            return i;
        if (ps_wordch(c))
            i++;
        else if (c == '`' && i + 1 < s->n)
            i += 2;
        else
            return i;
    }
}

/* (?:[\w?]|`[\s\S])+ from i (a variable's name); i when nothing matches */
static Py_ssize_t ps_var_body(const PsText *s, Py_ssize_t i) {
    for (;;) {
        Py_UCS4 c = ps_at(s, i);
        if (c == '?' || ps_w(c))
            i++;
        else if (c == '`' && i + 1 < s->n)
            i += 2;
        else
            return i;
    }
}

static inline int ps_lookahead_ok(const PsText *s, Py_ssize_t i) { /* (?![\w`]) */
    Py_UCS4 c = ps_at(s, i);
    return c == PS_EOT || !(c == '`' || ps_w(c));
}

static Py_ssize_t ps_number(const PsText *s, Py_ssize_t e) {
    Py_UCS4 c = ps_at(s, e);
    Py_ssize_t i, int_end = -1;
    if (c == '0' && ps_fold(ps_at(s, e + 1)) == 'x' && ps_hex(ps_at(s, e + 2))) {
        /* every character of 0x..l is \w: a shorter match is followed by \w, so the greedy
           one is the only candidate */
        for (i = e + 3; ps_hex(ps_at(s, i)); i++)
            ;
        if (ps_fold(ps_at(s, i)) == 'l')
            i++;
        if (ps_lookahead_ok(s, i))
            return i;
    }
    if (ps_d(c)) {
        for (i = e + 1; ps_d(ps_at(s, i)); i++)
            ;
        if (ps_at(s, i) == '.' && ps_d(ps_at(s, i + 1))) {
            int_end = i;
            for (i += 2; ps_d(ps_at(s, i)); i++)
                ;
        }
    } else if (c == '.' && ps_d(ps_at(s, e + 1))) {
        for (i = e + 2; ps_d(ps_at(s, i)); i++)
            ;
    } else {
        return -1;
    }
    if (ps_fold(ps_at(s, i)) == 'e') {
        Py_ssize_t k = i + 1;
        Py_UCS4 sg = ps_at(s, k);
        if ((sg == '+' || sg == '-') && ps_d(ps_at(s, k + 1)))
            k += 1;
        if (ps_d(ps_at(s, k))) {
            for (k++; ps_d(ps_at(s, k)); k++)
                ;
            i = k;
        }
    }
    Py_UCS4 f = ps_fold(ps_at(s, i));
    if (f == 'l' || f == 'd')
        i++;
    f = ps_fold(ps_at(s, i));
    if ((f == 'k' || f == 'm' || f == 'g' || f == 't' || f == 'p') && ps_fold(ps_at(s, i + 1)) == 'b')
        i += 2;
    if (ps_lookahead_ok(s, i))
        return i;
    /* backtracking: the only shorter end not followed by \w is the integer part before '.' */
    return int_end;
}

static const char *const PS_OPS[] = {
    "f", "bxor", "band", "bor", "bnot", "shl", "shr", "join", "split", "csplit", "isplit", "replace",
    "creplace", "ireplace", "eq", "ceq", "ne", "cne", "gt", "cgt", "lt", "clt", "ge", "cge", "le",
    "cle", "ieq", "ine", "like", "clike", "notlike", "cnotlike", "match", "cmatch", "notmatch",
    "cnotmatch", "contains", "ccontains", "notcontains", "cnotcontains", "in", "cin", "notin",
    "cnotin", "isnot", "is", "as", "and", "or", "xor", "not", NULL};

/* -op(?![\w`]): every operator is letters only, so it must be the whole \w run after the dash */
static Py_ssize_t ps_operator(const PsText *s, Py_ssize_t e) {
    char buf[16];
    Py_ssize_t i = e + 1, len = 0;
    for (; ps_w(ps_at(s, i)); i++) {
        Py_UCS4 f = ps_fold(ps_at(s, i));
        if (len >= 15 || f - 'a' >= 26u)
            return -1;
        buf[len++] = (char)f;
    }
    if (len == 0 || ps_at(s, i) == '`')
        return -1;
    buf[len] = 0;
    for (const char *const *op = PS_OPS; *op; op++)
        if ((*op)[0] == buf[0] && strcmp(*op, buf) == 0) /* the first letter rejects most */
            return i;
    return -1;
}

static Py_ssize_t ps_type(PsText *s, Py_ssize_t e) {
    Py_ssize_t i = e + 1;
    while (ps_s(ps_at(s, i)))
        i++;
    Py_UCS4 c = ps_at(s, i);
    if (!(ps_alpha_(c) || c == '`'))
        return -1;
    for (i++;; i++) {
        c = ps_at(s, i);
        if (!(ps_w(c) || c == '.' || c == '`' || c == '+'))
            break;
    }
    if (c == '[') {
        /* (?:\[[\w.,`\s\[\]]*\])?\s*\] : the class holds ']' too, so the regex backtracks from
           the end of the run to the last ']' that is followed by \s* and another ']' */
        if (!(s->run_from <= i + 1 && i + 1 <= s->run_to)) {
            Py_ssize_t z = i + 1;
            for (;; z++) {
                c = ps_at(s, z);
                if (!(ps_w(c) || c == '.' || c == ',' || c == '`' || c == '[' || c == ']' || ps_s(c)))
                    break;
            }
            s->run_from = i + 1;
            s->run_to = z;
            s->run_last = -1;
            for (Py_ssize_t k = z - 1; k > i; k--) {
                if (ps_at(s, k) != ']')
                    continue;
                Py_ssize_t j = k + 1;
                while (ps_s(ps_at(s, j)))
                    j++;
                if (ps_at(s, j) == ']') {
                    s->run_last = k;
                    break;
                }
            }
        }
        /* the same run from a later start: the regex's answer is the run's last such ']' when
           it lies after this '[' */
        if (s->run_last > i) {
            Py_ssize_t j = s->run_last + 1;
            while (ps_s(ps_at(s, j)))
                j++;
            return j + 1;
        }
        return -1;
    }
    while (ps_s(ps_at(s, i)))
        i++;
    return ps_at(s, i) == ']' ? i + 1 : -1;
}

static Py_ssize_t ps_symop(const PsText *s, Py_ssize_t e) {
    Py_UCS4 c = ps_at(s, e), d = ps_at(s, e + 1);
    if (ps_dash(c) && ps_dash(d))
        return e + 2;
    if (c == '+' && d == '+')
        return e + 2;
    if ((c == '+' || c == '*' || c == '/' || c == '%' || ps_dash(c)) && d == '=')
        return e + 2;
    if (c == '=')
        return e + 1;
    if ((c == ':' && d == ':') || (c == '.' && d == '.') || (c == '&' && d == '&') || (c == '|' && d == '|'))
        return e + 2;
    if (c == '!' || c == '+' || c == '*' || c == '/' || c == '%' || ps_dash(c))
        return e + 1;
    if (c == '<' || c == '>') {
        Py_ssize_t i = e + 1;
        while (ps_at(s, i) == '<' || ps_at(s, i) == '>')
            i++;
        return i;
    }
    if ((ps_adigit(c) || c == '*') && d == '>') {
        Py_ssize_t i = e + 2;
        if (ps_at(s, i) == '&')
            i++;
        if (ps_adigit(ps_at(s, i)))
            i++;
        return i;
    }
    return -1;
}

/* the token at e (not a space); its end, its kind in *kind */
static Py_ssize_t ps_match(PsText *s, Py_ssize_t e, int *kind) {
    Py_UCS4 c = ps_at(s, e), d = ps_at(s, e + 1);
    Py_ssize_t i;
    if (c == '\r' || c == '\n') {
        *kind = K_NEWLINE;
        for (i = e + 1;; i++) {
            Py_UCS4 x = ps_at(s, i);
            if (!(ps_ws0(x) || x == '\r' || x == '\n'))
                return i;
        }
    }
    if (ps_alpha_(c)) {
        *kind = K_WORD;
        return ps_word_tail(s, e + 1);
    }
    /* no rule before their own one starts with these: skip the tests in between */
    switch (c) {
    case '(': *kind = K_LPAREN; return e + 1;
    case ')': *kind = K_RPAREN; return e + 1;
    case '{': *kind = K_LBRACE; return e + 1;
    case '}': *kind = K_RBRACE; return e + 1;
    case ']': *kind = K_RBRACKET; return e + 1;
    case ',': *kind = K_COMMA; return e + 1;
    case ';': *kind = K_SEMICOLON; return e + 1;
    }
    if ((c == '<' && d == '#') || c == '#') {
        *kind = K_COMMENT;
        if (c == '#') {
            for (i = e + 1;; i++) {
                Py_UCS4 x = ps_at(s, i);
                if (x == PS_EOT || x == '\r' || x == '\n')
                    return i;
            }
        }
        for (i = e + 2; i + 1 < s->n; i++)
            if (ps_at(s, i) == '#' && ps_at(s, i + 1) == '>')
                return i + 2;
        return s->n;
    }
    if (c == '@' && (ps_q1(d) || ps_q2(d))) {
        int single = ps_q1(d);
        i = e + 2;
        while (ps_at(s, i) == ' ' || ps_at(s, i) == '\t')
            i++;
        if (ps_at(s, i) == '\r' && ps_at(s, i + 1) == '\n')
            i += 2;
        else if (ps_at(s, i) == '\n')
            i++;
        else
            i = -1;
        if (i >= 0) {
            *kind = K_HERESTRING;
            for (; i + 2 < s->n; i++) {
                Py_UCS4 q = ps_at(s, i + 1);
                if (ps_at(s, i) == '\n' && (single ? ps_q1(q) : ps_q2(q)) && ps_at(s, i + 2) == '@')
                    return i + 3;
            }
            return s->n;
        }
    }
    if (ps_q1(c)) {
        *kind = K_STRING;
        for (i = e + 1; i < s->n; i++) {
            if (ps_q1(ps_at(s, i))) {
                if (!ps_q1(ps_at(s, i + 1)))
                    return i + 1;
                i++;
            }
        }
        return i;
    }
    if (ps_q2(c)) {
        *kind = K_STRING;
        for (i = e + 1; i < s->n; i++) {
            Py_UCS4 x = ps_at(s, i);
            if (ps_q2(x)) {
                if (!ps_q2(ps_at(s, i + 1)))
                    return i + 1;
                i++;
            } else if (x == '`' && i + 1 < s->n) {
                i++;
            }
        }
        return s->n;
    }
    if (c == '$') {
        if (d == '(') {
            *kind = K_SUBEXPR;
            return e + 2;
        }
        *kind = K_VARIABLE;
        if (d == '{') {
            for (i = e + 2; i < s->n; i++) {
                Py_UCS4 x = ps_at(s, i);
                if (x == '}')
                    return i + 1;
                if (x == '`' && i + 1 < s->n)
                    i++;
            }
            return s->n;
        }
        if (ps_alpha_(d)) { /* a scope or drive prefix, name: then ':' not followed by ':' */
            for (i = e + 2; ps_w(ps_at(s, i)); i++)
                ;
            if (ps_at(s, i) == ':' && ps_at(s, i + 1) != ':') {
                Py_ssize_t j = ps_var_body(s, i + 1);
                if (j > i + 1)
                    return j;
            }
        }
        i = ps_var_body(s, e + 1);
        if (i > e + 1)
            return i;
        if (d == '$' || d == '?' || d == '^' || d == '_')
            return e + 2;
    }
    if (c == '@') {
        if (d == '(') {
            *kind = K_ARRAYEXPR;
            return e + 2;
        }
        if (d == '{') {
            *kind = K_HASHTABLE;
            return e + 2;
        }
        if (ps_alpha_(d)) {
            *kind = K_SPLAT;
            for (i = e + 2; ps_w(ps_at(s, i)); i++)
                ;
            return i;
        }
    }
    if (c == '[' && (i = ps_type(s, e)) >= 0) {
        *kind = K_TYPE;
        return i;
    }
    if ((c == '.' || ps_d(c)) && (i = ps_number(s, e)) >= 0) {
        *kind = K_NUMBER;
        return i;
    }
    if (ps_dash(c)) {
        if ((i = ps_operator(s, e)) >= 0) {
            *kind = K_OPERATOR;
            return i;
        }
        i = e + 1; /* parameter: [D](?:[A-Za-z_?]|`[\s\S])(?:[\w?\-]|`[\s\S])*:? */
        if (ps_alpha_(d) || d == '?')
            i = e + 2;
        else if (d == '`' && e + 2 < s->n)
            i = e + 3;
        if (i > e + 1) {
            for (;;) {
                Py_UCS4 x = ps_at(s, i);
                if (x == '?' || x == '-' || ps_w(x))
                    i++;
                else if (x == '`' && i + 1 < s->n)
                    i += 2;
                else
                    break;
            }
            if (ps_at(s, i) == ':')
                i++;
            *kind = K_PARAMETER;
            return i;
        }
    }
    if ((i = ps_symop(s, e)) >= 0) {
        *kind = K_OPERATOR;
        return i;
    }
    *kind = -1;
    switch (c) {
    case '.': *kind = K_DOT; break;
    case '(': *kind = K_LPAREN; break;
    case ')': *kind = K_RPAREN; break;
    case '{': *kind = K_LBRACE; break;
    case '}': *kind = K_RBRACE; break;
    case '[': *kind = K_LBRACKET; break;
    case ']': *kind = K_RBRACKET; break;
    case ',': *kind = K_COMMA; break;
    case ';': *kind = K_SEMICOLON; break;
    case '|': *kind = K_PIPE; break;
    case '&': *kind = K_AMP; break;
    }
    if (*kind >= 0)
        return e + 1;
    if (ps_wordch(c) || (c == '`' && e + 1 < s->n)) {
        *kind = K_WORD;
        return ps_word_tail(s, c == '`' ? e + 2 : e + 1);
    }
    *kind = K_UNKNOWN;
    return e + 1;
}

/* _SPACE, greedy: blanks and line continuations before a token */
static Py_ssize_t ps_space(const PsText *s, Py_ssize_t i) {
    for (;;) {
        Py_UCS4 c = ps_at(s, i);
        if (ps_ws0(c)) {
            i++;
        } else if (c == '`' && ps_at(s, i + 1) == '\n') {
            i += 2;
        } else if (c == '`' && ps_at(s, i + 1) == '\r' && ps_at(s, i + 2) == '\n') {
            i += 3;
        } else {
            return i;
        }
    }
}

/* The starts of tokens below PS_INTS (nearly all: the texts are a few thousand characters), made
   once and shared by every text's tokens (2 MB at most): else an allocation and a free a token */
enum { PS_INTS = 1 << 16 };
static PyObject *ps_ints[PS_INTS];

static inline PyObject *ps_int(Py_ssize_t i) {
    if (i >= PS_INTS)
        return PyLong_FromSsize_t(i);
    if (ps_ints[i] == NULL && (ps_ints[i] = PyLong_FromSsize_t(i)) == NULL)
        return NULL;
    Py_INCREF(ps_ints[i]);
    return ps_ints[i];
}

/* text[e:end], as PyUnicode_Substring makes it less its checks and calls: a Latin-1 character
   is the interpreter's own singleton (PyUnicode_FromOrdinal), kept here for the many
   one-character tokens; a piece of an ASCII text is ASCII, and a short one the same str as
   the last of its slot when equal (line breaks and indents, operators, common words and
   variables recur: no allocation and no free for them) */
enum { PS_SHORT = 16, PS_SHORT_SLOTS = 1024 };
static PyObject *ps_latin1[256], *ps_short[PS_SHORT_SLOTS];

static inline PyObject *ps_substring(PyObject *text, const PsText *s, Py_ssize_t e, Py_ssize_t end) {
    if (end == e + 1 && s->kind == PyUnicode_1BYTE_KIND) {
        Py_UCS1 c = ((const Py_UCS1 *)s->data)[e];
        if (ps_latin1[c] == NULL && (ps_latin1[c] = PyUnicode_FromOrdinal(c)) == NULL)
            return NULL;
        Py_INCREF(ps_latin1[c]);
        return ps_latin1[c];
    }
    if (PyUnicode_IS_ASCII(text)) {
        const Py_UCS1 *p = (const Py_UCS1 *)s->data + e;
        size_t len = (size_t)(end - e), h = len;
        PyObject **slot = NULL;
        if (len <= PS_SHORT) {
            for (size_t k = 0; k < len; k++)
                h = h * 31 + p[k];
            slot = &ps_short[h % PS_SHORT_SLOTS];
            if (*slot != NULL && (size_t)PyUnicode_GET_LENGTH(*slot) == len &&
                memcmp(PyUnicode_DATA(*slot), p, len) == 0) {
                Py_INCREF(*slot);
                return *slot;
            }
        }
        PyObject *sub = PyUnicode_New((Py_ssize_t)len, 127);
        if (sub == NULL)
            return NULL;
        memcpy(PyUnicode_DATA(sub), p, len);
        if (slot != NULL) {
            Py_INCREF(sub);
            Py_XSETREF(*slot, sub);
        }
        return sub;
    }
    return PyUnicode_Substring(text, e, end);
}

static PyObject *ps_tokens(PyObject *self, PyObject *args) {
    PyObject *text, *kinds, *deadline, *clock;
    PyTypeObject *ttype;
    int skip_comments;
    if (!PyArg_ParseTuple(args, "UO!O!pOO", &text, &PyType_Type, &ttype, &PyTuple_Type, &kinds,
                          &skip_comments, &deadline, &clock))
        return NULL;
    if (PyTuple_GET_SIZE(kinds) != K_COUNT || !PyType_IsSubtype(ttype, &PyTuple_Type) ||
        ttype->tp_basicsize != PyTuple_Type.tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "ps_tokens: a 3-field tuple type and 26 kinds expected");
        return NULL;
    }
    double limit = 0.0;
    int timed = deadline != Py_None;
    if (timed && ((limit = PyFloat_AsDouble(deadline)) == -1.0 && PyErr_Occurred()))
        return NULL;
    PsText s = {PyUnicode_KIND(text), PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text), -1, -1, -1};
    /* the tokens gather in a buffer, the list made once at the end: no PyList_Append a token,
       and no growing list for the collections the allocations trigger to visit (quadratic) */
    Py_ssize_t cap = s.n / 6 + 16, count = 0;
    PyObject **buf = PyMem_Malloc(sizeof(PyObject *) * (size_t)cap), *out = NULL;
    if (buf == NULL)
        return PyErr_NoMemory();
    Py_ssize_t pos = 0;
    while (pos < s.n) {
        Py_ssize_t e = ps_space(&s, pos);
        if (e >= s.n) {
            /* only blanks left: the regex backtracks into them to the last U+FEFF (a word
               character the blank class also holds) or line continuation's backtick */
            e = -1;
            for (Py_ssize_t q = s.n - 1; q >= pos; q--) {
                Py_UCS4 c = ps_at(&s, q);
                if (c == 0xFEFF || c == '`') {
                    e = q;
                    break;
                }
            }
            if (e < 0)
                break;
        }
        int kind;
        Py_ssize_t end = ps_match(&s, e, &kind);
        pos = end;
        if (kind == K_COMMENT && skip_comments)
            continue;
        /* a plain tuple from its free list; a subclass (Token) from its type */
        PyObject *tok = ttype == &PyTuple_Type ? PyTuple_New(3) : ttype->tp_alloc(ttype, 3);
        if (tok == NULL)
            goto done;
        PyObject *k = PyTuple_GET_ITEM(kinds, kind);
        Py_INCREF(k);
        PyTuple_SET_ITEM(tok, 0, k);
        PyObject *sub = ps_substring(text, &s, e, end), *at = ps_int(e);
        if (sub == NULL || at == NULL) {
            Py_XDECREF(sub);
            Py_XDECREF(at);
            Py_DECREF(tok);
            goto done;
        }
        PyTuple_SET_ITEM(tok, 1, sub);
        PyTuple_SET_ITEM(tok, 2, at);
        PyObject_GC_UnTrack(tok); /* str and int only: no cycle, nothing for gc to visit */
        if (count == cap) {
            PyObject **more = PyMem_Realloc(buf, sizeof(PyObject *) * (size_t)(cap *= 2));
            if (more == NULL) {
                Py_DECREF(tok);
                PyErr_NoMemory();
                goto done;
            }
            buf = more;
        }
        buf[count++] = tok;
        if (timed && (count & 1023) == 0) {
            PyObject *now = PyObject_CallNoArgs(clock);
            if (now == NULL)
                goto done;
            double t = PyFloat_AsDouble(now);
            Py_DECREF(now);
            if (t == -1.0 && PyErr_Occurred())
                goto done;
            if (t > limit)
                break;
        }
    }
    if ((out = PyList_New(count)) != NULL) {
        if (count > 0) /* (an empty list has no item array to copy to) */
            memcpy(((PyListObject *)out)->ob_item, buf, sizeof(PyObject *) * (size_t)count);
        count = 0;
    }
done: /* count: the tokens not handed to a list */
    for (Py_ssize_t j = 0; j < count; j++)
        Py_DECREF(buf[j]);
    PyMem_Free(buf);
    return out;
}

/* ps_brackets(tokens, roles) -> for each token the index of the token closing it (len(tokens)
   when none), as native int32 bytes; roles: kind -> 1 opens, 2 closes
   (deobfuscate._Folder.match_close's table).
   ps_fold_visit(tokens, roles) -> indices of the tokens of role 1 ('('), and of role 2 (word,
   type) whose text has a backtick or an ASCII lower-case letter before an upper-case one (what
   deobfuscate._fold can rewrite). Both are loops of the pure-Python paths kept beside them. */
/* The kinds seen in one call, by object: the tokens share a few kind strings, so a role is
   looked up in the dict once a kind, not once a token (those without one too: most kinds).
   Open addressing over more slots than there are kinds; a kind finding no free slot is
   looked up each time. */
enum { PS_ROLE_SLOTS = 64 };
typedef struct {
    PyObject *kind[PS_ROLE_SLOTS];
    int role[PS_ROLE_SLOTS];
} PsRoles;

static inline int ps_role(PyObject *roles, PsRoles *seen, PyObject *tok, PyObject **text) {
    if (!PyTuple_Check(tok) || PyTuple_GET_SIZE(tok) < 2) {
        PyErr_SetString(PyExc_TypeError, "tokens expected");
        return -1;
    }
    *text = PyTuple_GET_ITEM(tok, 1);
    PyObject *kind = PyTuple_GET_ITEM(tok, 0);
    size_t at = ((uintptr_t)kind >> 4) % PS_ROLE_SLOTS;
    for (int probe = 0; seen->kind[at] != NULL; probe++) {
        if (seen->kind[at] == kind)
            return seen->role[at];
        if (probe == PS_ROLE_SLOTS - 1)
            break;
        at = (at + 1) % PS_ROLE_SLOTS;
    }
    long role = 0;
    PyObject *r = PyDict_GetItemWithError(roles, kind);
    if (r == NULL && PyErr_Occurred())
        return -1;
    if (r != NULL && (role = PyLong_AsLong(r)) == -1 && PyErr_Occurred())
        return -1;
    /* the list keeps every token, and so every kind, alive for the call, and an exact str's
       lookup runs no Python code that could change it */
    if (PyUnicode_CheckExact(kind) && seen->kind[at] == NULL) {
        seen->kind[at] = kind;
        seen->role[at] = (int)role;
    }
    return (int)role;
}

static PyObject *ps_brackets(PyObject *self, PyObject *args) {
    PyObject *toks, *roles, *text;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &toks, &PyDict_Type, &roles))
        return NULL;
    PsRoles seen = {{0}, {0}};
    Py_ssize_t n = PyList_GET_SIZE(toks), depth = 0;
    Py_ssize_t *close = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n + 1) * 2), *stack = close + n + 1;
    if (close == NULL)
        return PyErr_NoMemory();
    PyObject *out = NULL;
    for (Py_ssize_t j = 0; j < n; j++) {
        close[j] = n;
        int role = ps_role(roles, &seen, PyList_GET_ITEM(toks, j), &text);
        if (role < 0)
            goto done;
        if (role == 1)
            stack[depth++] = j;
        else if (role == 2 && depth)
            close[stack[--depth]] = j;
    }
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "ps_brackets: too many tokens");
        goto done;
    }
    /* native int32s, read through memoryview(...).cast("i"): no int object a token */
    if ((out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int32_t))) == NULL)
        goto done;
    int32_t *at = (int32_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t j = 0; j < n; j++)
        at[j] = (int32_t)close[j];
done:
    PyMem_Free(close);
    return out;
}

static PyObject *ps_fold_visit(PyObject *self, PyObject *args) {
    PyObject *toks, *roles, *text;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &toks, &PyDict_Type, &roles))
        return NULL;
    PsRoles seen = {{0}, {0}};
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t j = 0, n = PyList_GET_SIZE(toks); j < n; j++) {
        int role = ps_role(roles, &seen, PyList_GET_ITEM(toks, j), &text);
        if (role < 0)
            goto fail;
        int hit = role == 1;
        if (role == 2 && PyUnicode_Check(text)) {
            int kind = PyUnicode_KIND(text);
            const void *data = PyUnicode_DATA(text);
            Py_UCS4 prev = 0;
            for (Py_ssize_t k = 0, m = PyUnicode_GET_LENGTH(text); k < m && !hit; k++) {
                Py_UCS4 c = PyUnicode_READ(kind, data, k);
                hit = c == '`' || (c - 'A' < 26u && prev - 'a' < 26u);
                prev = c;
            }
        }
        if (hit) {
            PyObject *v = PyLong_FromSsize_t(j);
            if (v == NULL || PyList_Append(out, v) < 0) {
                Py_XDECREF(v);
                goto fail;
            }
            Py_DECREF(v);
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* ---- PowerShell features (threatscope.powershell.features) ----------------------------------
   ps_scan(data, views, runs) -> [counts..., then count, total, longest of each run]: many
   counts of one buffer in one pass (features.py: those of the ASCII bytes; its needles in the
   lower-cased text's UTF-8, where ASCII needles occur just where they do in the str).
   views: ((table, delete, ((needle, start), ...)), ...), of bytes and ints: each needle counted
   as data.translate(table, delete).count(needle, start) counts it (non-overlapping, from start);
   runs: ((flags, min_len), ...): the runs of bytes b with flags[b] != 0 at least min_len long
   (and not empty): how many, their summed length, the longest (0: none).
   Single bytes counted from 0 are summed from a byte histogram at the end (deletion respected).
   The other needles (only in views that delete nothing: positions are then those of data) are
   found by one automaton stepped by the bytes of data: the product of each view's Aho-Corasick
   automaton (a few dozen states for features.py's class strings), so one table load a byte
   however many views and needles. An occurrence is counted when it starts at or after the end
   of the last one counted: a needle's occurrences come in the order of their ends, which is
   that of their starts, so this is str.count's leftmost first, then on after it.
   A plan (tables, automaton) is built on the first call with a pair of tuples and kept with
   them (immutable: tuples of bytes and ints) for the next calls with the same ones. */
enum {
    SCAN_VIEWS = 8, SCAN_NEEDLES = 256, SCAN_RUNS = 8, SCAN_STATES = 4096, SCAN_EMIT = 0x8000,
    SCAN_WORDS = SCAN_NEEDLES / 64, SCAN_PLANS = 4,
};

typedef struct {
    uint64_t bit[SCAN_WORDS];
} ScanSet; /* a set of needles */

typedef struct {
    int nv, nn, nr;
    unsigned char tab[SCAN_VIEWS][256], del[SCAN_VIEWS][256];
    int view[SCAN_NEEDLES], byte[SCAN_NEEDLES]; /* byte: a single byte counted from 0, else -1 */
    Py_ssize_t len[SCAN_NEEDLES], start[SCAN_NEEDLES];
    int src_at[SCAN_NEEDLES + 1]; /* the bytes of data that are single-byte needle j in its */
    unsigned char *src;           /* view's string: src[src_at[j] .. src_at[j + 1]) */
    unsigned char cls[256]; /* byte -> class: the bytes that step every state alike share one */
    int ncls;
    uint16_t *next; /* [state * ncls + class] -> the state stepped to, times ncls (its row),
                       | SCAN_EMIT when needles end there */
    int *out_at;    /* the needles that end at the state of row r: out[out_at[r] ..
                       out_at[r + 1]) */
    int *out;
    unsigned char rf[256]; /* bit r: the byte is in run r */
    Py_ssize_t min_len[SCAN_RUNS];
} ScanPlan;

static struct {
    PyObject *views, *runs;
    ScanPlan *plan;
} scan_plans[SCAN_PLANS];
static int scan_evict; /* the slot to reuse next when all are taken */

static void scan_free(ScanPlan *p) {
    if (p == NULL)
        return;
    PyMem_Free(p->next);
    PyMem_Free(p->out_at);
    PyMem_Free(p->out);
    PyMem_Free(p->src);
    PyMem_Free(p);
}

/* The Aho-Corasick automaton of view v's needles from `first` on that are not single bytes
   from 0, stepped by the bytes of data: [state * 256 + byte] -> state, and in *out the needles
   that end at each state; NULL with *states 0 when there are none. Built over the view's string
   (the trie, then breadth first: a missing step goes where the failure link's goes, outputs
   gather along the links), then read through the view's table. */
static int *scan_ac(const ScanPlan *p, int v, int first, const unsigned char **str, int *states,
                    ScanSet **out) {
    Py_ssize_t total = 1;
    *states = 0;
    *out = NULL;
    for (int j = first; j < p->nn && total <= SCAN_STATES; j++)
        if (p->byte[j] < 0)
            total += p->len[j];
    if (total == 1)
        return NULL;
    if (total > SCAN_STATES) {
        PyErr_SetString(PyExc_ValueError, "ps_scan: needles too long");
        return NULL;
    }
    int *trie = PyMem_Malloc(sizeof(int) * (size_t)total * 258), *fail = trie + (size_t)total * 256;
    int *queue = fail + total, *next = PyMem_Malloc(sizeof(int) * (size_t)total * 256);
    *out = PyMem_Calloc((size_t)total, sizeof(ScanSet));
    if (trie == NULL || next == NULL || *out == NULL) {
        PyMem_Free(trie);
        PyMem_Free(next);
        PyMem_Free(*out);
        *out = NULL;
        PyErr_NoMemory();
        return NULL;
    }
    for (int k = 0; k < total * 256; k++)
        trie[k] = -1;
    int n = 1;
    for (int j = first; j < p->nn; j++) {
        if (p->byte[j] >= 0)
            continue;
        int s = 0;
        for (Py_ssize_t k = 0; k < p->len[j]; k++) {
            int *t = &trie[s * 256 + str[j][k]];
            if (*t < 0)
                *t = n++;
            s = *t;
        }
        (*out)[s].bit[j / 64] |= (uint64_t)1 << (j % 64);
    }
    int head = 0, tail = 0;
    for (int c = 0; c < 256; c++) {
        if (trie[c] < 0) {
            trie[c] = 0;
        } else {
            fail[trie[c]] = 0;
            queue[tail++] = trie[c];
        }
    }
    while (head < tail) {
        int s = queue[head++];
        for (int w = 0; w < SCAN_WORDS; w++)
            (*out)[s].bit[w] |= (*out)[fail[s]].bit[w];
        for (int c = 0; c < 256; c++) {
            int *t = &trie[s * 256 + c], f = trie[fail[s] * 256 + c];
            if (*t < 0) {
                *t = f;
            } else {
                fail[*t] = f;
                queue[tail++] = *t;
            }
        }
    }
    for (int s = 0; s < n; s++)
        for (int c = 0; c < 256; c++)
            next[s * 256 + c] = trie[s * 256 + p->tab[v][c]];
    PyMem_Free(trie);
    *states = n;
    return next;
}

/* The number of tuple t (the na automata's states) among the product's n states; a new one
   when unseen (-1: there are SCAN_STATES already). */
enum { SCAN_SLOTS = 2 * SCAN_STATES };
static int scan_state(uint16_t *tuples, int *slot, int *n, const uint16_t *t, int na) {
    uint64_t h = 0;
    for (int k = 0; k < na; k++)
        h = (h + t[k] + 1) * 0x9E3779B97F4A7C15ULL;
    for (uint64_t at = h >> 32;; at++) {
        int *x = &slot[at % SCAN_SLOTS];
        if (*x < 0) {
            if (*n == SCAN_STATES)
                return -1;
            memcpy(&tuples[*n * na], t, sizeof(uint16_t) * (size_t)na);
            return *x = (*n)++;
        }
        if (memcmp(&tuples[*x * na], t, sizeof(uint16_t) * (size_t)na) == 0)
            return *x;
    }
}

/* p->next and the outputs: the product of the na automata (its states: tuples of theirs,
   numbered as met breadth first from all at their start), over byte classes (a table small
   enough to stay in the L1 cache). */
static int scan_product(ScanPlan *p, int na, int *const *ac, ScanSet *const *acout) {
    uint16_t *tuples = PyMem_Malloc(sizeof(uint16_t) * ((size_t)SCAN_STATES * na + 1));
    uint16_t t[SCAN_VIEWS] = {0};
    uint16_t *full = PyMem_Malloc(sizeof(uint16_t) * SCAN_STATES * 256); /* [state << 8 | byte] */
    int *slot = PyMem_Malloc(sizeof(int) * SCAN_SLOTS), n = 0, ok = 0;
    ScanSet *out = PyMem_Calloc(SCAN_STATES, sizeof(ScanSet));
    if (tuples == NULL || full == NULL || slot == NULL || out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int k = 0; k < SCAN_SLOTS; k++)
        slot[k] = -1;
    scan_state(tuples, slot, &n, t, na);
    for (int s = 0; s < n; s++)
        for (int c = 0; c < 256; c++) {
            ScanSet o = {{0}};
            uint64_t any = 0;
            for (int k = 0; k < na; k++) {
                t[k] = (uint16_t)ac[k][tuples[s * na + k] * 256 + c];
                for (int w = 0; w < SCAN_WORDS; w++)
                    o.bit[w] |= acout[k][t[k]].bit[w];
            }
            int id = scan_state(tuples, slot, &n, t, na);
            if (id < 0) {
                PyErr_SetString(PyExc_ValueError, "ps_scan: too many needles for one automaton");
                goto done;
            }
            for (int w = 0; w < SCAN_WORDS; w++)
                any |= o.bit[w];
            out[id] = o;
            full[s << 8 | c] = (uint16_t)(id | (any ? SCAN_EMIT : 0));
        }
    unsigned char first[256]; /* a byte of each class */
    p->ncls = 0;
    for (int c = 0; c < 256; c++) {
        int k = 0;
        for (; k < p->ncls; k++) {
            int s = 0;
            while (s < n && full[s << 8 | c] == full[s << 8 | first[k]])
                s++;
            if (s == n)
                break;
        }
        if (k == p->ncls)
            first[p->ncls++] = (unsigned char)c;
        p->cls[c] = (unsigned char)k;
    }
    if (n * p->ncls > SCAN_EMIT) {
        PyErr_SetString(PyExc_ValueError, "ps_scan: too many needles for one automaton");
        goto done;
    }
    p->next = PyMem_Malloc(sizeof(uint16_t) * (size_t)n * (size_t)p->ncls);
    if (p->next == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int s = 0; s < n; s++)
        for (int k = 0; k < p->ncls; k++) {
            unsigned x = full[s << 8 | first[k]], id = x & ~(unsigned)SCAN_EMIT;
            p->next[s * p->ncls + k] = (uint16_t)(id * p->ncls | (x & SCAN_EMIT));
        }
    int m = 0; /* the output lists, in needle order */
    for (int s = 0; s < n; s++)
        for (int w = 0; w < SCAN_WORDS; w++)
            m += __builtin_popcountll(out[s].bit[w]);
    p->out_at = PyMem_Malloc(sizeof(int) * ((size_t)n * p->ncls + 1));
    p->out = PyMem_Malloc(sizeof(int) * ((size_t)m + 1));
    if (p->out_at == NULL || p->out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    m = 0;
    for (int s = 0; s < n; s++) {
        p->out_at[s * p->ncls] = m;
        for (int w = 0; w < SCAN_WORDS; w++)
            for (uint64_t b = out[s].bit[w]; b; b &= b - 1)
                p->out[m++] = w * 64 + __builtin_ctzll(b);
        for (int k = 1; k < p->ncls; k++) /* the rest of the row: where its list ends */
            p->out_at[s * p->ncls + k] = m;
    }
    p->out_at[n * p->ncls] = m;
    ok = 1;
done:
    PyMem_Free(tuples);
    PyMem_Free(full);
    PyMem_Free(slot);
    PyMem_Free(out);
    return ok;
}

static ScanPlan *scan_build(PyObject *views, PyObject *runs) {
    const char *bad = "ps_scan: views ((table, delete, ((needle, start), ...)), ...) and runs "
                      "((flags, min_len), ...) of bytes and ints expected";
    const unsigned char *str[SCAN_NEEDLES];
    int *ac[SCAN_VIEWS], na = 0;
    ScanSet *acout[SCAN_VIEWS];
    ScanPlan *p = PyMem_Calloc(1, sizeof(ScanPlan));
    if (p == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    p->nv = (int)PyTuple_GET_SIZE(views);
    p->nr = (int)PyTuple_GET_SIZE(runs);
    if (p->nv > SCAN_VIEWS || p->nr > SCAN_RUNS) {
        PyErr_SetString(PyExc_ValueError, "ps_scan: at most 8 views and 8 runs");
        goto fail;
    }
    for (int v = 0; v < p->nv; v++) {
        PyObject *spec = PyTuple_GET_ITEM(views, v), *tab, *del, *needles;
        if (!PyTuple_Check(spec)) {
            PyErr_SetString(PyExc_TypeError, bad);
            goto fail;
        }
        if (!PyArg_ParseTuple(spec, "SSO!", &tab, &del, &PyTuple_Type, &needles))
            goto fail;
        if (PyBytes_GET_SIZE(tab) != 256) {
            PyErr_SetString(PyExc_ValueError, "ps_scan: a 256-byte table expected");
            goto fail;
        }
        memcpy(p->tab[v], PyBytes_AS_STRING(tab), 256);
        for (Py_ssize_t k = 0; k < PyBytes_GET_SIZE(del); k++)
            p->del[v][(unsigned char)PyBytes_AS_STRING(del)[k]] = 1;
        int first = p->nn, states;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(needles); k++) {
            PyObject *item = PyTuple_GET_ITEM(needles, k), *s;
            Py_ssize_t start;
            if (!PyTuple_Check(item)) {
                PyErr_SetString(PyExc_TypeError, bad);
                goto fail;
            }
            if (!PyArg_ParseTuple(item, "Sn", &s, &start))
                goto fail;
            if (p->nn == SCAN_NEEDLES || PyBytes_GET_SIZE(s) == 0 || start < 0) {
                PyErr_SetString(PyExc_ValueError,
                                "ps_scan: at most 256 non-empty needles, start >= 0");
                goto fail;
            }
            int j = p->nn++;
            str[j] = (const unsigned char *)PyBytes_AS_STRING(s);
            p->view[j] = v;
            p->len[j] = PyBytes_GET_SIZE(s);
            p->start[j] = start;
            p->byte[j] = p->len[j] == 1 && start == 0 ? str[j][0] : -1;
            if (p->byte[j] < 0 && PyBytes_GET_SIZE(del) > 0) {
                PyErr_SetString(PyExc_ValueError,
                                "ps_scan: a deleting view counts single bytes from 0 only");
                goto fail;
            }
        }
        ac[na] = scan_ac(p, v, first, str, &states, &acout[na]);
        if (states > 0)
            na++;
        else if (PyErr_Occurred())
            goto fail;
    }
    for (int r = 0; r < p->nr; r++) {
        PyObject *spec = PyTuple_GET_ITEM(runs, r), *flags;
        if (!PyTuple_Check(spec)) {
            PyErr_SetString(PyExc_TypeError, bad);
            goto fail;
        }
        if (!PyArg_ParseTuple(spec, "Sn", &flags, &p->min_len[r]))
            goto fail;
        if (PyBytes_GET_SIZE(flags) != 256) {
            PyErr_SetString(PyExc_ValueError, "ps_scan: a 256-byte table expected");
            goto fail;
        }
        for (int c = 0; c < 256; c++)
            if (PyBytes_AS_STRING(flags)[c])
                p->rf[c] |= (unsigned char)(1u << r);
    }
    if (!scan_product(p, na, ac, acout))
        goto fail;
    p->src = PyMem_Malloc((size_t)p->nn * 256 + 1);
    if (p->src == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (int j = 0, m = 0; j < p->nn; j++) {
        p->src_at[j] = m;
        for (int c = 0; c < 256 && p->byte[j] >= 0; c++)
            if (!p->del[p->view[j]][c] && p->tab[p->view[j]][c] == p->byte[j])
                p->src[m++] = (unsigned char)c;
        p->src_at[j + 1] = m;
    }
    for (int k = 0; k < na; k++) {
        PyMem_Free(ac[k]);
        PyMem_Free(acout[k]);
    }
    return p;
fail:
    for (int k = 0; k < na; k++) {
        PyMem_Free(ac[k]);
        PyMem_Free(acout[k]);
    }
    scan_free(p);
    return NULL;
}

/* The plan for views and runs: kept, or built (in the slot of the least recently built). */
static const ScanPlan *scan_plan(PyObject *views, PyObject *runs) {
    for (int k = 0; k < SCAN_PLANS; k++)
        if (scan_plans[k].views == views && scan_plans[k].runs == runs)
            return scan_plans[k].plan;
    ScanPlan *p = scan_build(views, runs);
    if (p == NULL)
        return NULL;
    int k = scan_evict;
    scan_evict = (k + 1) % SCAN_PLANS;
    scan_free(scan_plans[k].plan);
    Py_XDECREF(scan_plans[k].views);
    Py_XDECREF(scan_plans[k].runs);
    scan_plans[k].views = Py_NewRef(views);
    scan_plans[k].runs = Py_NewRef(runs);
    scan_plans[k].plan = p;
    return p;
}

typedef struct {
    unsigned prev; /* the run bits of the byte before */
    Py_ssize_t start[SCAN_RUNS], count[SCAN_RUNS], total[SCAN_RUNS], longest[SCAN_RUNS];
} ScanRuns;

/* The byte at i has run bits f, not those of the byte before: runs end and start. */
static void scan_runs_at(ScanRuns *R, const Py_ssize_t *min_len, unsigned f, Py_ssize_t i) {
    for (unsigned e = R->prev & ~f; e; e &= e - 1) {
        int r = __builtin_ctz(e);
        Py_ssize_t len = i - R->start[r];
        if (len >= min_len[r]) {
            R->count[r]++;
            R->total[r] += len;
            if (len > R->longest[r])
                R->longest[r] = len;
        }
    }
    for (unsigned s = f & ~R->prev; s; s &= s - 1)
        R->start[__builtin_ctz(s)] = i;
    R->prev = f;
}

static PyObject *ps_scan(PyObject *self, PyObject *args) {
    Py_buffer data;
    PyObject *views, *runs;
    if (!PyArg_ParseTuple(args, "y*O!O!", &data, &PyTuple_Type, &views, &PyTuple_Type, &runs))
        return NULL;
    const ScanPlan *p = scan_plan(views, runs);
    if (p == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    const unsigned char *d = data.buf;
    const uint16_t *next = p->next;
    const unsigned char *cls = p->cls;
    Py_ssize_t n = data.len, cnt[SCAN_NEEDLES], next_ok[SCAN_NEEDLES], hist[256] = {0};
    ScanRuns R = {0};
    for (int j = 0; j < p->nn; j++) {
        cnt[j] = 0;
        next_ok[j] = p->start[j];
    }
    unsigned row = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned c = d[i], f = p->rf[c], t = next[row + cls[c]];
        hist[c]++;
        if (f != R.prev)
            scan_runs_at(&R, p->min_len, f, i);
        row = t & ~(unsigned)SCAN_EMIT;
        if (t & SCAN_EMIT)
            for (int k = p->out_at[row]; k < p->out_at[row + 1]; k++) { /* needles end at i */
                int j = p->out[k];
                if (i + 1 - p->len[j] >= next_ok[j]) {
                    cnt[j]++;
                    next_ok[j] = i + 1;
                }
            }
    }
    scan_runs_at(&R, p->min_len, 0, n);
    PyBuffer_Release(&data);
    for (int j = 0; j < p->nn; j++)
        for (int k = p->src_at[j]; k < p->src_at[j + 1]; k++)
            cnt[j] += hist[p->src[k]];
    PyObject *out = PyList_New(p->nn + 3 * p->nr);
    for (int j = 0; out && j < p->nn + 3 * p->nr; j++) {
        int r = (j - p->nn) / 3, k = (j - p->nn) % 3;
        PyObject *o = PyLong_FromSsize_t(j < p->nn ? cnt[j]
                                          : k == 0 ? R.count[r]
                                          : k == 1 ? R.total[r]
                                                   : R.longest[r]);
        if (o == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, j, o);
    }
    return out;
}

/* ---- gradient-boosted trees (threatscope.powershell.classify) ----------------------------------
   gbdt_sum(row, nodes, roots) -> the sum of the trees' leaf values for the feature row (a list
   of floats), added in tree order as the compiled Python expression adds them (so the same
   double). nodes: packed "<iiiidd" records (feature or -1 for a leaf, left, right, 0, threshold,
   value; children are absolute indices); roots: packed int32 root indices. */
typedef struct {
    int32_t feat, left, right, pad;
    double thr, val;
} GbNode; /* 32 bytes, no padding: struct "<iiiidd" */

static PyObject *gbdt_sum(PyObject *self, PyObject *args) {
    PyObject *row;
    Py_buffer nodes, roots;
    if (!PyArg_ParseTuple(args, "O!y*y*", &PyList_Type, &row, &nodes, &roots))
        return NULL;
    PyObject *res = NULL;
    Py_ssize_t nn = nodes.len / (Py_ssize_t)sizeof(GbNode), nr = roots.len / 4, nf = PyList_GET_SIZE(row);
    const GbNode *nd = nodes.buf;
    const int32_t *rt = roots.buf;
    double *x = PyMem_Malloc(sizeof(double) * (size_t)(nf + 1)), acc = 0.0;
    if (x == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < nf; j++) {
        x[j] = PyFloat_AsDouble(PyList_GET_ITEM(row, j));
        if (x[j] == -1.0 && PyErr_Occurred())
            goto done;
    }
    for (Py_ssize_t t = 0; t < nr; t++) {
        int32_t i = rt[t];
        for (int steps = 0;; steps++) {
            if (i < 0 || i >= nn || steps > 64) {
                PyErr_SetString(PyExc_ValueError, "gbdt_sum: malformed tree");
                goto done;
            }
            const GbNode *n = &nd[i];
            if (n->feat < 0) {
                acc = t == 0 ? n->val : acc + n->val;
                break;
            }
            if (n->feat >= nf) {
                PyErr_SetString(PyExc_IndexError, "gbdt_sum: feature index out of the row");
                goto done;
            }
            i = x[n->feat] <= n->thr ? n->left : n->right;
        }
    }
    res = PyFloat_FromDouble(acc);
done:
    PyMem_Free(x);
    PyBuffer_Release(&nodes);
    PyBuffer_Release(&roots);
    return res;
}

static PyMethodDef methods[] = {
    {"gbdt_sum", gbdt_sum, METH_VARARGS,
     "gbdt_sum(row, nodes, roots) -> sum of the trees' leaves (powershell.classify)"},
    {"ps_scan", ps_scan, METH_VARARGS,
     "ps_scan(data, views, runs) -> needle counts, then count, total, longest of each run (powershell.features)"},
    {"ps_brackets", ps_brackets, METH_VARARGS,
     "ps_brackets(tokens, roles) -> index of each token's closing bracket (powershell.deobfuscate)"},
    {"ps_fold_visit", ps_fold_visit, METH_VARARGS,
     "ps_fold_visit(tokens, roles) -> indices of the tokens _fold may rewrite (powershell.deobfuscate)"},
    {"ps_tokens", ps_tokens, METH_VARARGS,
     "ps_tokens(text, token_type, kinds, skip_comments, deadline, clock) -> tokens (powershell.tokenize)"},
    {"fields", fields, METH_VARARGS,
     "fields(lines, spec, date_days=None) -> (nlines, ok_bitmap, nrows, columns)"},
    {"ip_numbers", ip_numbers, METH_VARARGS,
     "ip_numbers(n, offset, validity, offsets, data) -> ('d128', validity, values)"},
    {"pool_info", pool_info, METH_NOARGS, "pool_info() -> (blocks, bytes) kept for reuse"},
    {"range_index", range_index, METH_VARARGS,
     "range_index(n, first_hi, first_lo, last_hi, last_lo, m, q_hi, q_lo, q_valid) -> (validity, idx)"},
    {"split_lines", split_lines, METH_VARARGS,
     "split_lines(block) -> (nlines, offsets, data, blank, max_len, utf8_ok)"},
    {"url_parts", url_parts, METH_VARARGS,
     "url_parts(n, offset, validity, offsets, data) -> (path, query, decoded)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "Typed field splitting of log lines and range look-ups (see _native.c).", -1,
                                    methods};

int patterns_ready(PyObject *module); /* _patterns.c: the detect stage's functions */

PyMODINIT_FUNC PyInit__native(void) {
    uint64_t stack = (uint64_t)(uintptr_t)&stack; /* ASLR */
    hash_seed = hash_bytes((const char *)&stack, 8) ^ (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL;
    if (PyType_Ready(&ChunkType) < 0)
        return NULL;
    ps_init();
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "MAX_FIELDS", MAXF) || patterns_ready(m) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
