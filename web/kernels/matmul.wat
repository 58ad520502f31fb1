;; Projections y = x W^T with 128-bit SIMD, on NumPy arrays in Pyodide's own memory (imported as
;; env.memory: pointers are NumPy's data addresses, nothing is copied). Assembled by build.py.
;;
;;   x (l, in) float32, W (out, in), y (l, out) float32: y[t, r] = sum_c W[r, c] x[t, c]
;;
;; Two ways W is stored, one export each (both row-major, C-contiguous):
;;   matmul_f32 (w, x, y, out, in, l)          w: float32 (out, in)
;;   matmul_q8  (w, x, y, out, in, l, scratch) w: GGUF Q8_0 as the file stores it, each row in / 32
;;                                             blocks of 34 bytes: a float16 scale d, then 32 int8 q;
;;                                             W[r, 32 b + j] = d * q[j] of row r's block b;
;;                                             x rounded to 16 bits (below), scratch: l * in * 2.125 bytes
;; Any out, in and l (tails are scalar loops; Q8_0 needs in % 32 == 0, as GGUF guarantees); no
;; alignment is assumed (v128.load takes any address).
;;
;; Why the loops are ordered row, then token: one row of W (a few kB) is read from memory once and
;; stays in the L1 cache for the l tokens of a prompt block; decode (l = 1) streams W once per token,
;; and the 8-bit form streams 3.8x fewer bytes than float32. (A float16 kernel, widening each half
;; in four vector steps before its multiply, decoded slower than this float32 one on the same model:
;; F16 files are widened to float32 once at load, mamba_wasm/packed.py.)
;; A row's dot product keeps 4 independent f32x4 sums (16 columns a step): one sum would wait on
;; the previous add each step. Sums are in another order than NumPy's: results differ by rounding.
(module
  (import "env" "memory" (memory 1))

  (func $lanes (param $v v128) (result f32)  ;; the sum of the four lanes
    (f32.add (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
             (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))

  ;; ---- float32 ---------------------------------------------------------------------------------

  (func $dot_f32 (param $w i32) (param $x i32) (param $n i32) (result f32)  ;; w (n,) . x (n,)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $s f32)
    (block $done16 (loop $step16
      (br_if $done16 (i32.lt_u (local.get $n) (i32.const 16)))
      (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load (local.get $w)) (v128.load (local.get $x)))))
      (local.set $a1 (f32x4.add (local.get $a1)
        (f32x4.mul (v128.load offset=16 (local.get $w)) (v128.load offset=16 (local.get $x)))))
      (local.set $a2 (f32x4.add (local.get $a2)
        (f32x4.mul (v128.load offset=32 (local.get $w)) (v128.load offset=32 (local.get $x)))))
      (local.set $a3 (f32x4.add (local.get $a3)
        (f32x4.mul (v128.load offset=48 (local.get $w)) (v128.load offset=48 (local.get $x)))))
      (local.set $w (i32.add (local.get $w) (i32.const 64)))
      (local.set $x (i32.add (local.get $x) (i32.const 64)))
      (local.set $n (i32.sub (local.get $n) (i32.const 16)))
      (br $step16)))
    (local.set $s (call $lanes (f32x4.add (f32x4.add (local.get $a0) (local.get $a1))
                                          (f32x4.add (local.get $a2) (local.get $a3)))))
    (block $done (loop $step  ;; the last n % 16 columns
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $s (f32.add (local.get $s) (f32.mul (f32.load (local.get $w)) (f32.load (local.get $x)))))
      (local.set $w (i32.add (local.get $w) (i32.const 4)))
      (local.set $x (i32.add (local.get $x) (i32.const 4)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $step)))
    (local.get $s))

  (func (export "matmul_f32") (param $w i32) (param $x i32) (param $y i32) (param $out i32) (param $in i32) (param $l i32)
    (local $r i32) (local $t i32) (local $xt i32) (local $yt i32)
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $r) (local.get $out)))
      (local.set $xt (local.get $x))
      (local.set $yt (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2))))
      (local.set $t (i32.const 0))
      (block $tokens_done (loop $token
        (br_if $tokens_done (i32.ge_u (local.get $t) (local.get $l)))
        (f32.store (local.get $yt) (call $dot_f32 (local.get $w) (local.get $xt) (local.get $in)))
        (local.set $xt (i32.add (local.get $xt) (i32.shl (local.get $in) (i32.const 2))))
        (local.set $yt (i32.add (local.get $yt) (i32.shl (local.get $out) (i32.const 2))))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $token)))
      (local.set $w (i32.add (local.get $w) (i32.shl (local.get $in) (i32.const 2))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $row))))

  ;; ---- Q8_0: blocks of 32 int8 numbers sharing one float16 scale ------------------------------
  ;; Widening every int8 to float32 (three steps) costs more than the multiply itself, so x is rounded
  ;; once per call to 16-bit integers, per block of 32 with its own scale s = max |x| / 32767, and
  ;; each block's sum of q x is exact in 32-bit integers (i32x4.dot_i16x8_s: pairs of int8 times int16,
  ;; at most 32 * 128 * 32767 < 2^31), times d s. The one rounding: each x within s / 2 of its value,
  ;; so a block's sum is off by at most d s / 2 sum |q| (tests/kernels_in_pyodide.py checks that bound).
  ;; The rounded x (l, in) int16 and its scales (l, in / 32) float32 go to `scratch`, made by the caller.
  ;; The scale d, a finite half, becomes float32 exactly, subnormals included: d sign-extended to an
  ;; int32 and shifted left by 13 has d's exponent and mantissa at bits 13-27 and its sign at bits
  ;; 28-31; masked to bit 31 and 13-27 and read as a float32 that is d times 2^-112 with d's sign, so
  ;; it is multiplied by 2^112. Written out inside the loop: V8 does not inline helper calls, and a
  ;; first version that called helpers in its loops was about twice as slow (docs/BENCHMARKS.md).

  ;; x (n,) float32 -> xq (n,) int16 and sx (n / 32,) float32 scales, n % 32 == 0
  (func $round_x (param $x i32) (param $xq i32) (param $sx i32) (param $blocks i32)
    (local $m v128) (local $scale f32) (local $inverse v128) (local $i i32)
    (block $done (loop $block
      (br_if $done (i32.eqz (local.get $blocks)))
      (local.set $m (f32x4.max (f32x4.max (f32x4.max (f32x4.abs (v128.load (local.get $x)))
                                                     (f32x4.abs (v128.load offset=16 (local.get $x))))
                                          (f32x4.max (f32x4.abs (v128.load offset=32 (local.get $x)))
                                                     (f32x4.abs (v128.load offset=48 (local.get $x)))))
                               (f32x4.max (f32x4.max (f32x4.abs (v128.load offset=64 (local.get $x)))
                                                     (f32x4.abs (v128.load offset=80 (local.get $x))))
                                          (f32x4.max (f32x4.abs (v128.load offset=96 (local.get $x)))
                                                     (f32x4.abs (v128.load offset=112 (local.get $x)))))))
      (local.set $scale (f32.div (f32.max (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
                                          (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m))))
                                 (f32.const 32767)))
      (f32.store (local.get $sx) (local.get $scale))
      (local.set $inverse (f32x4.splat (select (f32.div (f32.const 1) (local.get $scale)) (f32.const 0)
                                               (f32.gt (local.get $scale) (f32.const 0)))))
      (local.set $i (i32.const 0))
      (block $eights (loop $eight  ;; 8 numbers a step: two f32x4 rounded, narrowed to one i16x8
        (br_if $eights (i32.ge_u (local.get $i) (i32.const 128)))
        (v128.store (i32.add (local.get $xq) (i32.shr_u (local.get $i) (i32.const 1)))
          (i16x8.narrow_i32x4_s
            (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $i))) (local.get $inverse))))
            (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=16 (i32.add (local.get $x) (local.get $i))) (local.get $inverse))))))
        (local.set $i (i32.add (local.get $i) (i32.const 32)))
        (br $eight)))
      (local.set $x (i32.add (local.get $x) (i32.const 128)))
      (local.set $xq (i32.add (local.get $xq) (i32.const 64)))
      (local.set $sx (i32.add (local.get $sx) (i32.const 4)))
      (local.set $blocks (i32.sub (local.get $blocks) (i32.const 1)))
      (br $block))))

  ;; w (blocks, 34) . x rounded (xq (32 * blocks,) int16, sx (blocks,) scales)
  (func $dot_q8 (param $w i32) (param $xq i32) (param $sx i32) (param $blocks i32) (result f32)
    (local $acc v128) (local $v v128) (local $s v128)
    (block $done (loop $block
      (br_if $done (i32.eqz (local.get $blocks)))
      (local.set $v (v128.load offset=2 (local.get $w)))  ;; numbers 0-15 of the block
      (local.set $s (i32x4.add
        (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $v)) (v128.load (local.get $xq)))
        (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $v)) (v128.load offset=16 (local.get $xq)))))
      (local.set $v (v128.load offset=18 (local.get $w)))  ;; numbers 16-31
      (local.set $s (i32x4.add (local.get $s) (i32x4.add
        (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $v)) (v128.load offset=32 (local.get $xq)))
        (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $v)) (v128.load offset=48 (local.get $xq))))))
      (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (f32x4.convert_i32x4_s (local.get $s))
        (f32x4.splat (f32.mul (f32.load (local.get $sx))
          (f32.mul (f32.const 0x1p112) (f32.reinterpret_i32 (i32.and (i32.const 0x8fffe000)  ;; d, as above
            (i32.shl (i32.load16_s (local.get $w)) (i32.const 13))))))))))
      (local.set $w (i32.add (local.get $w) (i32.const 34)))
      (local.set $xq (i32.add (local.get $xq) (i32.const 64)))
      (local.set $sx (i32.add (local.get $sx) (i32.const 4)))
      (local.set $blocks (i32.sub (local.get $blocks) (i32.const 1)))
      (br $block)))
    (call $lanes (local.get $acc)))

  (func (export "matmul_q8") (param $w i32) (param $x i32) (param $y i32) (param $out i32) (param $in i32) (param $l i32)
                             (param $scratch i32)
    (local $r i32) (local $t i32) (local $xt i32) (local $st i32) (local $yt i32) (local $blocks i32) (local $sx i32)
    (local.set $blocks (i32.shr_u (local.get $in) (i32.const 5)))
    (local.set $sx (i32.add (local.get $scratch) (i32.mul (i32.mul (local.get $l) (local.get $in)) (i32.const 2))))
    (block $rounded (loop $round  ;; every token's x, once for all rows
      (br_if $rounded (i32.ge_u (local.get $t) (local.get $l)))
      (call $round_x (i32.add (local.get $x) (i32.mul (i32.mul (local.get $t) (local.get $in)) (i32.const 4)))
                     (i32.add (local.get $scratch) (i32.mul (i32.mul (local.get $t) (local.get $in)) (i32.const 2)))
                     (i32.add (local.get $sx) (i32.mul (i32.mul (local.get $t) (local.get $blocks)) (i32.const 4)))
                     (local.get $blocks))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br $round)))
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $r) (local.get $out)))
      (local.set $xt (local.get $scratch))
      (local.set $st (local.get $sx))
      (local.set $yt (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2))))
      (local.set $t (i32.const 0))
      (block $tokens_done (loop $token
        (br_if $tokens_done (i32.ge_u (local.get $t) (local.get $l)))
        (f32.store (local.get $yt) (call $dot_q8 (local.get $w) (local.get $xt) (local.get $st) (local.get $blocks)))
        (local.set $xt (i32.add (local.get $xt) (i32.shl (local.get $in) (i32.const 1))))
        (local.set $st (i32.add (local.get $st) (i32.shl (local.get $blocks) (i32.const 2))))
        (local.set $yt (i32.add (local.get $yt) (i32.shl (local.get $out) (i32.const 2))))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $token)))
      (local.set $w (i32.add (local.get $w) (i32.mul (local.get $blocks) (i32.const 34))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $row))))
)
