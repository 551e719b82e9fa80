"""Physical data of the smelting chemistry: atomic masses, standard enthalpies of formation,
the composition of air, and the sensible and combustion heats the balance needs.

Sources per number in docs/process-model.md (process-model §4); `reaction_enthalpy` lets the
tests check textbook reaction heats against this table.
"""

from __future__ import annotations

from dataclasses import dataclass

# Atomic masses, g/mol (IUPAC).
A_CU, A_FE, A_S, A_O, A_SI, A_AL, A_C, A_H, A_N = (
    63.546,
    55.845,
    32.06,
    15.999,
    28.0855,
    26.9815,
    12.011,
    1.008,
    14.007,
)
MW_CU2S = 2 * A_CU + A_S
MW_FES = A_FE + A_S
MW_FEO = A_FE + A_O
MW_FE3O4 = 3 * A_FE + 4 * A_O
MW_SIO2 = A_SI + 2 * A_O
MW_AL2O3 = 2 * A_AL + 3 * A_O
MW_H2O = 2 * A_H + A_O

# Standard enthalpies of formation at 298.15 K, kJ/mol [T] (process-model §4).
HF_CUFES2 = -194.93
HF_FES = -102.59
HF_FES2 = -171.64
HF_CU2S = -80.21
HF_SO2 = -296.83
HF_FEO = -272.04
HF_FE3O4 = -1118.4
HF_SIO2 = -910.7
HF_FE2SIO4 = -1479.9
HF_AL2O3 = -1675.7
HF_CO2 = -393.52
HF_H2O_G = -241.83
HF_H2O_L = -285.83  # liquid water (moisture in a feed), NIST-JANAF

O2_IN_AIR = 0.2095
NM3_PER_KMOL = 22.414
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class SensibleHeat:
    """Enthalpy above 25 °C, linear in temperature around an operating point.

    `at_ref` at `ref_c` (MJ/kg or kJ/mol), changing by `per_k` per kelvin. Linear is enough
    within ±100 K of the operating point, where the liquids' heat capacities barely change.
    """

    at_ref: float
    ref_c: float
    per_k: float

    def at(self, temp_c: float) -> float:
        return self.at_ref + self.per_k * (temp_c - self.ref_c)


@dataclass(frozen=True)
class Organics:
    """Combustible matter (resins, oil): elemental mass fractions and lower heating value.

    Its enthalpy of formation follows from the heating value (Hess): burning 1 kg releases
    `lhv_mj_per_kg` and gives CO2 and H2O(g), so ΔHf = products' ΔHf + LHV.
    """

    c: float
    h: float
    o: float = 0.0
    lhv_mj_per_kg: float = 30.0

    def hf_mj_per_kg(self) -> float:
        return self.c / A_C * HF_CO2 + self.h / (2 * A_H) * HF_H2O_G + self.lhv_mj_per_kg

    def o2_kmol_per_t(self) -> float:
        """Oxygen to burn one tonne completely, kmol."""
        return 1000 * (self.c / A_C + self.h / (4 * A_H) - self.o / (2 * A_O))


def reaction_enthalpy(reactants: dict[str, float], products: dict[str, float]) -> float:
    """ΔH of a reaction at 25 °C from the formation enthalpies above, kJ (per the coefficients)."""
    table = {
        "CuFeS2": HF_CUFES2, "FeS": HF_FES, "FeS2": HF_FES2, "Cu2S": HF_CU2S, "SO2": HF_SO2,
        "FeO": HF_FEO, "Fe3O4": HF_FE3O4, "SiO2": HF_SIO2, "Fe2SiO4": HF_FE2SIO4,
        "Al2O3": HF_AL2O3, "CO2": HF_CO2, "H2O": HF_H2O_G, "O2": 0.0, "N2": 0.0, "Cu": 0.0,
        "Fe": 0.0, "Al": 0.0,
    }  # fmt: skip
    return sum(n * table[s] for s, n in products.items()) - sum(
        n * table[s] for s, n in reactants.items()
    )
