;; Projections y = x W^T with 128-bit SIMD, on NumPy arrays in Pyodide's own memory (imported as
;; env.memory: pointers are NumPy's data addresses, nothing is copied). Assembled by build.py.
;;
;;   x (l, in) float32, W (out, in), y (l, out) float32: y[t, r] = sum_c W[r, c] x[t, c]
;;
;; Three ways W is stored, one export each (all row-major, C-contiguous):
;;   matmul_f32 (w, x, y, out, in, l)          w: float32 (out, in)
;;   matmul_f16 (w, x, y, out, in, l)          w: IEEE float16 (out, in), finite
;;   matmul_q8  (w, x, y, out, in, l)          w: GGUF Q8_0 as the file stores it, each row in / 32
;;                                             blocks of 34 bytes: a float16 scale d, then 32 int8 q;
;;                                             W[r, 32 b + j] = d * q[j] of row r's block b
;; Any out, in and l (tails are scalar loops; Q8_0 needs in % 32 == 0, as GGUF guarantees); no
;; alignment is assumed (v128.load takes any address).
;;
;; Why the loops are ordered row, then token: one row of W (a few kB) is read from memory once and
;; stays in the L1 cache for the l tokens of a prompt block; decode (l = 1) streams W once per token,
;; and the 8-bit and 16-bit forms stream 3.8x and 2x fewer bytes than float32.
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

    ;; ---- float16 ---------------------------------------------------------------------------------
  ;; A finite half h becomes float32 exactly, subnormals included: h sign-extended to an int32 and
  ;; shifted left by 13 has h's exponent and mantissa at bits 13-27 and its sign at bits 28-31; masked
  ;; to bit 31 and 13-27 and read as a float32 that is h times 2^-112 with h's sign, so multiply by 2^112.
  ;; No helper calls inside the loops: V8 does not inline them, and a call per four numbers cost
  ;; more than the conversion (measured).

  (func $half (param $h i32) (result f32)  ;; one half (the low 16 bits of h)
    (f32.mul (f32.reinterpret_i32 (i32.and (i32.shl (i32.extend16_s (local.get $h)) (i32.const 13))
                                           (i32.const 0x8fffe000)))
             (f32.const 0x1p112)))

  (func $dot_f16 (param $w i32) (param $x i32) (param $n i32) (result f32)  ;; w (n,) halves . x (n,)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $h v128) (local $s f32)
    (local $mask v128) (local $scale v128)
    (local.set $mask (v128.const i32x4 0x8fffe000 0x8fffe000 0x8fffe000 0x8fffe000))
    (local.set $scale (v128.const f32x4 0x1p112 0x1p112 0x1p112 0x1p112))
    (block $done16 (loop $step16
      (br_if $done16 (i32.lt_u (local.get $n) (i32.const 16)))
      (local.set $h (v128.load (local.get $w)))  ;; halves 0-7
      (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load (local.get $x))
        (f32x4.mul (local.get $scale) (v128.and (local.get $mask)
          (i32x4.shl (i32x4.extend_low_i16x8_s (local.get $h)) (i32.const 13)))))))
      (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (v128.load offset=16 (local.get $x))
        (f32x4.mul (local.get $scale) (v128.and (local.get $mask)
          (i32x4.shl (i32x4.extend_high_i16x8_s (local.get $h)) (i32.const 13)))))))
      (local.set $h (v128.load offset=16 (local.get $w)))  ;; halves 8-15
      (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (v128.load offset=32 (local.get $x))
        (f32x4.mul (local.get $scale) (v128.and (local.get $mask)
          (i32x4.shl (i32x4.extend_low_i16x8_s (local.get $h)) (i32.const 13)))))))
      (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (v128.load offset=48 (local.get $x))
        (f32x4.mul (local.get $scale) (v128.and (local.get $mask)
          (i32x4.shl (i32x4.extend_high_i16x8_s (local.get $h)) (i32.const 13)))))))
      (local.set $w (i32.add (local.get $w) (i32.const 32)))
      (local.set $x (i32.add (local.get $x) (i32.const 64)))
      (local.set $n (i32.sub (local.get $n) (i32.const 16)))
      (br $step16)))
    (local.set $s (call $lanes (f32x4.add (f32x4.add (local.get $a0) (local.get $a1))
                                          (f32x4.add (local.get $a2) (local.get $a3)))))
    (block $done (loop $step
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $s (f32.add (local.get $s) (f32.mul (call $half (i32.load16_u (local.get $w))) (f32.load (local.get $x)))))
      (local.set $w (i32.add (local.get $w) (i32.const 2)))
      (local.set $x (i32.add (local.get $x) (i32.const 4)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $step)))
    (local.get $s))

  (func (export "matmul_f16") (param $w i32) (param $x i32) (param $y i32) (param $out i32) (param $in i32) (param $l i32)
    (local $r i32) (local $t i32) (local $xt i32) (local $yt i32)
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $r) (local.get $out)))
      (local.set $xt (local.get $x))
      (local.set $yt (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2))))
      (local.set $t (i32.const 0))
      (block $tokens_done (loop $token
        (br_if $tokens_done (i32.ge_u (local.get $t) (local.get $l)))
        (f32.store (local.get $yt) (call $dot_f16 (local.get $w) (local.get $xt) (local.get $in)))
        (local.set $xt (i32.add (local.get $xt) (i32.shl (local.get $in) (i32.const 2))))
        (local.set $yt (i32.add (local.get $yt) (i32.shl (local.get $out) (i32.const 2))))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $token)))
      (local.set $w (i32.add (local.get $w) (i32.shl (local.get $in) (i32.const 1))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $row))))

  ;; ---- Q8_0: blocks of 32 int8 numbers sharing one float16 scale ------------------------------

  ;; w (blocks, 34) . x (32 * blocks,): each block's sum of q x (a tree of adds, not a chain), times d
  (func $dot_q8 (param $w i32) (param $x i32) (param $blocks i32) (result f32)
    (local $acc v128) (local $v v128) (local $h v128) (local $p0 v128) (local $p1 v128) (local $p2 v128)
    (local $p3 v128)
    (block $done (loop $block
      (br_if $done (i32.eqz (local.get $blocks)))
      (local.set $v (v128.load offset=2 (local.get $w)))  ;; numbers 0-15 of the block
      (local.set $h (i16x8.extend_low_i8x16_s (local.get $v)))
      (local.set $p0 (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $h))) (v128.load (local.get $x))))
      (local.set $p1 (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $h)))
                                (v128.load offset=16 (local.get $x))))
      (local.set $h (i16x8.extend_high_i8x16_s (local.get $v)))
      (local.set $p2 (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $h)))
                                (v128.load offset=32 (local.get $x))))
      (local.set $p3 (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $h)))
                                (v128.load offset=48 (local.get $x))))
      (local.set $p0 (f32x4.add (f32x4.add (local.get $p0) (local.get $p1)) (f32x4.add (local.get $p2) (local.get $p3))))
      (local.set $v (v128.load offset=18 (local.get $w)))  ;; numbers 16-31
      (local.set $h (i16x8.extend_low_i8x16_s (local.get $v)))
      (local.set $p1 (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $h)))
                                (v128.load offset=64 (local.get $x))))
      (local.set $p2 (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $h)))
                                (v128.load offset=80 (local.get $x))))
      (local.set $h (i16x8.extend_high_i8x16_s (local.get $v)))
      (local.set $p3 (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $h)))
                                (v128.load offset=96 (local.get $x))))
      (local.set $p1 (f32x4.add (f32x4.add (local.get $p1) (local.get $p2)) (f32x4.add (local.get $p3)
        (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $h))) (v128.load offset=112 (local.get $x))))))
      (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (f32x4.add (local.get $p0) (local.get $p1))
        (f32x4.splat (f32.mul (f32.const 0x1p112) (f32.reinterpret_i32 (i32.and (i32.const 0x8fffe000)  ;; d ($half)
          (i32.shl (i32.load16_s (local.get $w)) (i32.const 13)))))))))
      (local.set $w (i32.add (local.get $w) (i32.const 34)))
      (local.set $x (i32.add (local.get $x) (i32.const 128)))
      (local.set $blocks (i32.sub (local.get $blocks) (i32.const 1)))
      (br $block)))
    (call $lanes (local.get $acc)))

  (func (export "matmul_q8") (param $w i32) (param $x i32) (param $y i32) (param $out i32) (param $in i32) (param $l i32)
    (local $r i32) (local $t i32) (local $xt i32) (local $yt i32) (local $blocks i32)
    (local.set $blocks (i32.shr_u (local.get $in) (i32.const 5)))
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $r) (local.get $out)))
      (local.set $xt (local.get $x))
      (local.set $yt (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2))))
      (local.set $t (i32.const 0))
      (block $tokens_done (loop $token
        (br_if $tokens_done (i32.ge_u (local.get $t) (local.get $l)))
        (f32.store (local.get $yt) (call $dot_q8 (local.get $w) (local.get $xt) (local.get $blocks)))
        (local.set $xt (i32.add (local.get $xt) (i32.shl (local.get $in) (i32.const 2))))
        (local.set $yt (i32.add (local.get $yt) (i32.shl (local.get $out) (i32.const 2))))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $token)))
      (local.set $w (i32.add (local.get $w) (i32.mul (local.get $blocks) (i32.const 34))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $row))))
)
